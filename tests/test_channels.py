"""Choosing the objectness channel from label-free statistics (docs/method.md#the-objectness-channel)."""
import pytest
import torch

from objectness import cli
from objectness.inference.channels import (
    ChannelStatistics,
    _Accumulator,
    choose_objectness_channel,
)
from objectness.model.amd import AMD
from objectness.model.checkpoint import load_model, metadata, save_weights


def stats(channel, entropy, error, centre, spread, area):
    return ChannelStatistics(channel, entropy, error, centre, 0.0, spread, area)


def test_the_crisp_central_hard_to_rebuild_channel_is_chosen():
    channels = [
        stats(0, 0.9, 0.05, 0.30, 0.5, 0.30),  # soft, peripheral background
        stats(1, 0.2, 0.12, 0.05, 0.2, 0.15),  # the object
        stats(2, 0.6, 0.06, 0.25, 0.4, 0.25),
    ]
    assert choose_objectness_channel(channels) == 1


def test_empty_and_whole_image_channels_are_not_candidates():
    channels = [
        stats(0, 0.01, 0.50, 0.00, 0.01, 0.001),  # nearly empty: crisp but meaningless
        stats(1, 0.05, 0.40, 0.01, 0.10, 0.90),  # the whole background
        stats(2, 0.40, 0.10, 0.20, 0.30, 0.09),
    ]
    assert choose_objectness_channel(channels) == 2


def test_statistics_of_a_known_mask():
    h = w = 20
    masks = torch.zeros(1, 2, h, w)
    masks[0, 0, 5:15, 5:15] = 1  # a crisp central square
    masks[0, 1] = 1 - masks[0, 0]
    distance = torch.zeros(1, 1, h, w)
    distance[..., 5:15, 5:15] = 0.3  # the object is hard to rebuild
    acc = _Accumulator(2)
    acc.add(masks, distance)
    square, rest = acc.result()
    assert abs(square.area - 0.25) < 1e-6
    assert abs(square.reconstruction_error - 0.3) < 1e-4 and rest.reconstruction_error < 1e-4
    assert square.centre_distance < 1e-4
    assert square.spatial_spread < rest.spatial_spread
    assert square.entropy < 1e-3


@pytest.fixture
def tiny_run(tmp_path, tiny_config):
    torch.manual_seed(0)
    run = tmp_path / "run"
    save_weights(run / "model.safetensors", AMD(tiny_config.model), tiny_config, metadata())
    return run


def test_channels_command_stores_the_choice_and_draws_the_statistics(tiny_run, capsys):
    assert cli.main(["channels", "--checkpoint", str(tiny_run), "--data", "synthetic", "--pairs", "4"]) == 0
    out = capsys.readouterr().out
    stored = load_model(tiny_run)[2]
    assert f"objectness channel {stored['objectness_channel']} stored" in out
    assert len(stored["channel_statistics"]) == 5
    assert "entropy" in out and (tiny_run / "channels.png").is_file()


def test_channels_command_stores_the_users_channel(tiny_run, capsys):
    assert cli.main(["channels", "--checkpoint", str(tiny_run), "--channel", "4"]) == 0
    assert load_model(tiny_run)[2]["objectness_channel"] == 4


@pytest.mark.parametrize("args", [["--channel", "5"], []])
def test_channels_command_refuses_a_bad_or_missing_channel_in_one_line(tiny_run, capsys, args):
    assert cli.main(["channels", "--checkpoint", str(tiny_run), *args]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert load_model(tiny_run)[2]["objectness_channel"] is None


def test_a_model_taught_the_motion_masks_keeps_the_taught_channel(tmp_path, tiny_config, capsys):
    import dataclasses

    cfg = dataclasses.replace(tiny_config, loss=dataclasses.replace(tiny_config.loss, motion_mask_weight=1.0,
                                                                    motion_mask_channel=3))
    torch.manual_seed(0)
    path = tmp_path / "model.safetensors"
    save_weights(path, AMD(cfg.model), cfg, metadata())
    assert cli.main(["channels", "--checkpoint", str(path), "--data", "synthetic", "--pairs", "4"]) == 0
    assert "channel 3 was trained on the flow's motion masks" in capsys.readouterr().out
    assert load_model(path)[2]["objectness_channel"] == 3
