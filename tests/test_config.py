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
