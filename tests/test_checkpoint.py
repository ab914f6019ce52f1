import random

import numpy as np
import pytest
import torch

from objectness.config import load_config, to_dict
from objectness.model.amd import AMD
from objectness.model.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model,
    metadata,
    save_checkpoint,
    save_weights,
    store_objectness_channel,
)
from objectness.training.run import rng_state, set_rng_state


class NotATensor:
    pass


@pytest.fixture
def tiny_model(tiny_config):
    torch.manual_seed(0)
    return AMD(tiny_config.model)


def _state(model, cfg) -> dict:
    return {"model": model.state_dict(), "config": to_dict(cfg), "metadata": metadata()}


def test_checkpoint_round_trips(tmp_path, tiny_model, tiny_config):
    save_checkpoint(tmp_path / "last.pt", _state(tiny_model, tiny_config))
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["config"] == to_dict(tiny_config)
    assert all(torch.equal(v, tiny_model.state_dict()[k]) for k, v in state["model"].items())


def test_failed_save_keeps_the_previous_checkpoint_and_no_temp_file(tmp_path, tiny_model, tiny_config):
    path = tmp_path / "last.pt"
    save_checkpoint(path, _state(tiny_model, tiny_config))
    with pytest.raises(Exception):
        save_checkpoint(path, {"model": lambda: None})  # cannot be pickled
    assert load_checkpoint(path)["config"] == to_dict(tiny_config)
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_missing_checkpoint_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nothing.pt")


def test_truncated_checkpoint_is_a_checkpoint_error(tmp_path, tiny_model, tiny_config):
    path = tmp_path / "last.pt"
    save_checkpoint(path, _state(tiny_model, tiny_config))
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(path)


def test_checkpoint_holding_arbitrary_objects_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "config": {}, "payload": NotATensor()}, path)
    with pytest.raises(CheckpointError, match="other than tensors"):
        load_checkpoint(path)


def test_file_without_model_and_config_is_a_checkpoint_error(tmp_path):
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an objectness checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_rng_state_survives_a_weights_only_round_trip(tmp_path):
    save_checkpoint(tmp_path / "rng.pt", {"model": {}, "config": {}, "rng": rng_state()})
    expected = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    drawn = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(drawn[0], expected[0])
    assert np.array_equal(drawn[1], expected[1])
    assert drawn[2] == expected[2]


@pytest.mark.parametrize("name", ["model.safetensors", "last.pt", "."])
def test_load_model_from_weights_checkpoint_or_run_folder(tmp_path, tiny_model, tiny_config, name):
    save_weights(tmp_path / "model.safetensors", tiny_model, tiny_config, metadata(objectness_channel=2))
    save_checkpoint(tmp_path / "last.pt", _state(tiny_model, tiny_config))
    model, cfg, meta = load_model(tmp_path / name)
    assert cfg == tiny_config
    assert not model.training
    assert all(torch.equal(v, tiny_model.state_dict()[k]) for k, v in model.state_dict().items())
    assert meta["version"]
    if name != "last.pt":
        assert meta["objectness_channel"] == 2


def test_load_model_refuses_weights_of_another_model(tmp_path, tiny_model, tiny_overrides):
    other = load_config(None, [*tiny_overrides, "model.num_segments=3"])
    save_weights(tmp_path / "model.safetensors", tiny_model, other, metadata())
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model(tmp_path / "model.safetensors")


def test_stored_objectness_channel_reaches_both_files_of_a_run_folder(tmp_path, tiny_model, tiny_config):
    save_weights(tmp_path / "model.safetensors", tiny_model, tiny_config, metadata())
    save_checkpoint(tmp_path / "last.pt", _state(tiny_model, tiny_config))
    written = store_objectness_channel(tmp_path, 3, statistics=[{"channel": 3, "entropy": 0.1}])
    assert sorted(p.name for p in written) == ["last.pt", "model.safetensors"]
    for name in ("last.pt", "model.safetensors"):
        model, _, meta = load_model(tmp_path / name)
        assert meta["objectness_channel"] == 3
        assert meta["channel_statistics"][0]["entropy"] == 0.1
        assert all(torch.equal(v, tiny_model.state_dict()[k]) for k, v in model.state_dict().items())
    assert load_checkpoint(tmp_path / "last.pt")["config"] == to_dict(tiny_config)
    assert not list(tmp_path.glob(".*tmp"))


def test_storing_a_channel_in_a_missing_checkpoint_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        store_objectness_channel(tmp_path / "missing.pt", 1)


def test_a_config_saved_before_the_release_objective_options_keeps_its_objective(tmp_path, tiny_config):
    """Weights saved before loss.grid & co. existed were trained with the other values: they load with those."""
    import json

    from safetensors.torch import save_file

    old = to_dict(tiny_config)
    for key in ("grid", "occlusion", "ssim"):
        del old["loss"][key]
    for key in ("align_corners", "mask_resize", "warp_flow"):
        del old["model"]["motion"][key]
    model = AMD(tiny_config.model)
    path = tmp_path / "old.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path),
              metadata={"config": json.dumps(old), "metadata": json.dumps(metadata())})
    _, cfg, _ = load_model(path)
    assert (cfg.loss.grid, cfg.loss.occlusion, cfg.loss.ssim) == ("image", "per_level", "padded")
    assert (cfg.model.motion.align_corners, cfg.model.motion.mask_resize, cfg.model.motion.warp_flow) == (
        False, "area", "recomposed")
    _, today, _ = load_model(_saved(tmp_path / "new.safetensors", tiny_config))
    assert today.loss.grid == tiny_config.loss.grid  # a config that names the options keeps its own


def _saved(path, cfg):
    save_weights(path, AMD(cfg.model), cfg, metadata())
    return path


def test_weights_whose_config_is_out_of_range_are_refused(tmp_path, tiny_config, tiny_model):
    tiny_config.data.gap = 0  # no longer a valid config
    save_weights(tmp_path / "model.safetensors", tiny_model, tiny_config, metadata(objectness_channel=0))
    with pytest.raises(CheckpointError, match="data.gap"):
        load_model(tmp_path / "model.safetensors")


def test_weights_that_are_not_finite_are_refused_when_loaded(tmp_path, tiny_config, tiny_model):
    with torch.no_grad():
        next(tiny_model.parameters())[0] = float("nan")
    save_weights(tmp_path / "model.safetensors", tiny_model, tiny_config, metadata(objectness_channel=0))
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        load_model(tmp_path / "model.safetensors")
