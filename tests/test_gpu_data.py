"""Pairs made on the training device (data.on_device): the augmentation of docs/method.md#training as tensor operations."""
import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from objectness.config import DataConfig, SyntheticConfig, load_config
from objectness.data.device_frames import (
    DeviceFrames,
    DevicePairLoader,
    largest_needed,
    pack_frames,
    pair_batch,
    read_pack,
    unpack_frames,
)
from objectness.data.video import DataError
from objectness.training.train import train

CPU = torch.device("cpu")


def _frames(count=5, height=8, width=12, seed=0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, 3, height, width), dtype=torch.uint8, generator=generator)  # (N, 3, H, W)


def _cfg(**changes) -> DataConfig:
    base = DataConfig(crop_size=(8, 12), short_edge=8, scale_range=(1.0, 1.0), hflip=False)
    return dataclasses.replace(base, **changes)


def _windows(frame: torch.Tensor, height: int, width: int) -> list:
    """Every (3, height, width) window of a (3, H, W) frame, and its mirror image."""
    return [w for top in range(frame.shape[1] - height + 1) for left in range(frame.shape[2] - width + 1)
            for window in [frame[:, top:top + height, left:left + width]] for w in (window, window.flip(-1))]


def test_a_pack_holds_every_frame_and_unpacks_to_frame_folders(tmp_path):
    cfg = DataConfig(source="synthetic", synthetic=SyntheticConfig(num_videos=2, num_frames=3, height=32, width=48))
    info = pack_frames(cfg, tmp_path / "pack.npz", "JPEG", 90)
    assert (info["videos"], info["frames"]) == (2, 6)
    videos = read_pack(tmp_path / "pack.npz")
    assert [len(v) for v in videos] == [3, 3] and videos[0].read(0).shape == (32, 48, 3)
    folder = unpack_frames(tmp_path / "pack.npz", tmp_path / "frames")
    assert sorted(p.name for p in folder.iterdir()) == sorted(v.name for v in videos)
    assert len(list((folder / videos[1].name).glob("*.jpg"))) == 3


def test_at_scale_one_and_full_crop_a_pair_is_the_two_frames_themselves():
    frames = DeviceFrames(_frames(), [5], gap=2)
    batch = pair_batch(frames, _cfg(), 16, torch.Generator().manual_seed(0))  # (B, 2, 3, H, W)
    originals = frames.frames.float() / 255
    for pair in batch:
        first = next(k for k in range(5) if torch.allclose(pair[0], originals[k], atol=1e-5))
        second = next(k for k in range(5) if torch.allclose(pair[1], originals[k], atol=1e-5))
        assert abs(first - second) == 2


def test_a_crop_is_a_window_of_the_frame_and_a_flip_mirrors_it():
    frames = DeviceFrames(_frames(), [5], gap=1)
    batch = pair_batch(frames, _cfg(crop_size=(4, 6), hflip=True), 32, torch.Generator().manual_seed(1))
    originals = frames.frames.float() / 255
    mirrored = 0
    for pair in batch:
        k = next(k for k in range(5) for w in _windows(originals[k], 4, 6) if torch.allclose(pair[0], w, atol=1e-5))
        index = next(i for i, w in enumerate(_windows(originals[k], 4, 6)) if torch.allclose(pair[0], w, atol=1e-5))
        mirrored += index % 2
        partner = [k - 1, k + 1]
        assert any(torch.allclose(pair[1], _windows(originals[j], 4, 6)[index], atol=1e-5)
                   for j in partner if 0 <= j < 5), "the same crop and flip on both frames"
    assert 0 < mirrored < len(batch)


def test_pairs_stay_within_one_video():
    frames = torch.arange(7, dtype=torch.uint8).mul(30)[:, None, None, None].expand(7, 3, 8, 12).contiguous()
    device_frames = DeviceFrames(frames, [3, 4], gap=1)  # pairs (0,1) (1,2) | (3,4) (4,5) (5,6)
    assert len(device_frames) == 5
    batch = pair_batch(device_frames, _cfg(), 64, torch.Generator().manual_seed(2))
    indices = (batch[:, :, 0, 0, 0] * 255 / 30).round().long()  # (B, 2) frame index of each frame
    assert ((indices[:, 0] - indices[:, 1]).abs() == 1).all()
    assert not ((indices.min(1).values == 2) & (indices.max(1).values == 3)).any()


def test_a_step_gives_the_same_batch_whenever_it_is_drawn(tiny_config):
    cfg = dataclasses.replace(tiny_config, data=_cfg(crop_size=(4, 6), scale_range=(0.9, 1.0), hflip=True))
    frames = DeviceFrames(_frames(), [5], gap=1)
    from_start = [b["frames"] for b in DevicePairLoader(frames, cfg, start_step=0)]
    resumed = [b["frames"] for b in DevicePairLoader(frames, cfg, start_step=2)]
    assert len(from_start) == cfg.train.steps and len(resumed) == cfg.train.steps - 2
    assert torch.equal(from_start[2], resumed[0]) and torch.equal(from_start[3], resumed[1])
    assert not torch.equal(from_start[0], from_start[1])


def test_frames_larger_than_any_crop_needs_are_downscaled_once():
    cfg = DataConfig(short_edge=100, scale_range=(0.9, 1.0), crop_size=(96, 96))
    assert largest_needed(cfg, (400, 600)) == (100, 150)
    assert largest_needed(cfg, (90, 120)) == (90, 120)  # never upscaled at load


def test_frames_of_two_sizes_are_refused(tmp_path):
    for name, size in (("a", (32, 24)), ("b", (40, 24))):
        (tmp_path / name).mkdir()
        for i in range(2):
            Image.fromarray(np.zeros((*size, 3), np.uint8)).save(tmp_path / name / f"{i}.png")
    with pytest.raises(DataError, match="one size"):
        DeviceFrames.load(DataConfig(source=str(tmp_path)), CPU)


def test_training_reads_a_pack_onto_the_device(tmp_path, tiny_overrides):
    pack_frames(DataConfig(source="synthetic", synthetic=SyntheticConfig(num_videos=2, num_frames=4, height=64, width=64)),
                tmp_path / "pack.npz")
    cfg = load_config(None, [*tiny_overrides, f"data.source={tmp_path / 'pack.npz'}", "data.on_device=true",
                             "train.steps=2"])
    summary = train(cfg, tmp_path / "run")
    assert summary["step"] == 2 and np.isfinite(summary["loss"])
