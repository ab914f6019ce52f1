"""Config: presets, overrides and clear errors."""
from pathlib import Path

import pytest

from objectness.config import (
    PRESET_DIR,
    Config,
    ConfigError,
    FinetuneConfig,
    from_dict,
    load_config,
    save_config,
    to_dict,
)


def test_paper_preset_holds_the_papers_recipe():
    cfg = load_config("paper")
    assert (cfg.model.num_segments, cfg.model.appearance.depth, cfg.model.appearance.output_stride) == (5, 50, 8)
    assert cfg.model.motion.input_size == (384, 640) and cfg.model.motion.search_range == 4
    assert (cfg.loss.l1_weight, cfg.loss.ssim_weight, cfg.loss.level_weights) == (0.15, 0.85, (1, 1, 1, 1))
    assert (cfg.train.lr, cfg.train.min_lr, cfg.train.weight_decay, cfg.train.steps) == (1e-4, 1e-6, 1e-6, 400_000)
    assert cfg.data.crop_size == (384, 384) and cfg.data.short_edge == 400
    # Every option beyond the paper is off in it.
    loss = cfg.loss
    assert (loss.flow_fit_weight, loss.motion_mask_weight, loss.distill_weight, loss.paste_weight) == (0, 0, 0, 0)
    assert loss.view_synthesis_weight == 1 and cfg.data.color_jitter == 0
    assert cfg.data.test_scales == (1.0,) and cfg.data.test_guided_radius == 0


def test_overrides_parse_yaml_values_including_bare_exponents():
    cfg = load_config("cpu-small", ["train.lr=1e-3", "loss.level_weights=[1,0,0]", "model.motion.input_size=null"])
    assert cfg.train.lr == 0.001 and cfg.loss.level_weights == (1, 0, 0) and cfg.model.motion.input_size is None


@pytest.mark.parametrize("override,message", [
    ("train.stepz=3", "unknown config key 'train.stepz'"),
    ("train.steps=many", "expects int"),
    ("train.lr=fast", "expects a number"),
    ("train.amp=1", "expects true or false"),
    ("steps", "section.key=value"),
])
def test_bad_overrides_are_one_line_config_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_unknown_preset_lists_the_presets():
    with pytest.raises(ConfigError, match="paper"):
        load_config("no-such-preset")


def test_saved_config_loads_back_identical(tmp_path):
    cfg = load_config("cpu-small", ["train.steps=7"])
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(str(tmp_path / "c.yaml")) == cfg
    assert from_dict(to_dict(cfg)) == cfg


@pytest.mark.parametrize("name", sorted(p.stem for p in PRESET_DIR.glob("*.yaml")))
def test_every_preset_loads_by_name_and_by_the_repository_path(name):
    cls = FinetuneConfig if name.startswith("finetune-") else Config  # finetune-*: objectness finetune's
    cfg = load_config(name, cls=cls)
    repository_path = Path(__file__).parents[1] / "configs" / f"{name}.yaml"
    if repository_path.parent.exists():  # a source checkout: configs/ links to the presets
        assert to_dict(load_config(str(repository_path), cls=cls)) == to_dict(cfg)


@pytest.mark.parametrize("preset, cls, command", [("finetune-cpu", Config, "finetune"),
                                                  ("davis-flowfit", FinetuneConfig, "train")])
def test_a_preset_of_the_other_command_is_named_as_such(preset, cls, command):
    with pytest.raises(ConfigError, match=f"'{preset}' is a preset of `objectness {command}`"):
        load_config(preset, cls=cls)


@pytest.mark.parametrize("override, key", [
    ("data.gap=0", "data.gap"),
    ("train.batch_size=0", "train.batch_size"),
    ("data.crop_size=[0,0]", "data.crop_size"),
    ("data.crop_size=[128]", "data.crop_size"),
    ("model.num_segments=0", "model.num_segments"),
    ("model.appearance.width=0", "model.appearance.width"),
    ("model.appearance.depth=19", "model.appearance.depth"),
    ("train.lr=.nan", "train.lr"),
    ("train.lr=-1e-4", "train.lr"),
    ("train.lr=.inf", "train.lr"),
    ("train.steps=0", "train.steps"),
    ("train.seed=-1", "train.seed"),
    ("train.log_every=0", "train.log_every"),
    ("data.scale_range=[1.0,0.5]", "data.scale_range"),
    ("data.short_edge=0", "data.short_edge"),
    ("data.color_jitter=1.5", "data.color_jitter"),
    ("data.test_scales=[0]", "test_scales"),
    ("data.test_guided_radius=0.9", "test_guided_radius"),
    ("loss.occlusion_threshold=-1", "loss.occlusion_threshold"),
    ("loss.level_weights=[1,1,1,1,1,1]", "loss.level_weights"),
    ("loss.grid=crop", "loss.grid"),
    ("model.motion.warp_flow=dense", "model.motion.warp_flow"),
    ("data.synthetic.num_frames=0", "data.synthetic.num_frames"),
])
def test_a_value_out_of_range_is_refused_when_the_config_is_loaded(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config("cpu-small", [override])


def test_an_objective_of_zero_weights_is_refused():
    with pytest.raises(ConfigError, match="nothing to learn"):
        load_config("cpu-small", ["loss.view_synthesis_weight=0"])


@pytest.mark.parametrize("override, key", [("train.momentum=1", "train.momentum"),
                                           ("data.dataset=coco", "data.dataset"),
                                           ("train.batch_size=0", "train.batch_size")])
def test_a_finetune_value_out_of_range_is_refused(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config("finetune-cpu", [override], cls=FinetuneConfig)


def test_a_config_built_in_python_is_checked_by_train(tmp_path):
    from objectness.training.train import train

    cfg = load_config("cpu-small")
    cfg.data.gap = 0
    with pytest.raises(ConfigError, match="data.gap"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_the_command_line_gives_one_line_and_code_2_for_a_value_out_of_range(tmp_path, capsys):
    from objectness.cli import main

    assert main(["train", "--config", "cpu-small", "--set", "data.gap=0", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "data.gap" in err and "at least 1" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("amp, precision", [(True, "auto"), (False, "fp32")])
def test_a_saved_config_with_the_old_amp_key_reads_as_a_precision(amp, precision):
    saved = to_dict(load_config("cpu-small"))
    del saved["train"]["precision"]
    saved["train"]["amp"] = amp
    assert from_dict(saved).train.precision == precision


def test_precision_auto_picks_bf16_only_where_the_device_has_it(caplog):
    import logging

    import torch

    from objectness.device import native_bf16, resolve_precision

    cpu = torch.device("cpu")
    with caplog.at_level(logging.INFO, logger="objectness.device"):
        chosen = resolve_precision("auto", cpu)
    assert chosen == ("bf16" if native_bf16(cpu) else "fp32") and "precision auto" in caplog.text
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(ConfigError, match="train.precision"):
        load_config(None, ["train.precision=fp16"])
