import colorsys
import time

import numpy as np
import pytest
from PIL import Image

from objectness.config import ConfigError, SyntheticConfig
from objectness.data.synthetic import make_video, write_dataset, write_frames

SMALL = SyntheticConfig(num_videos=2, num_frames=4, height=40, width=56)


def saturation(pixels: np.ndarray) -> np.ndarray:
    """HSV saturation of uint8 RGB pixels (N, 3)."""
    rgb = pixels.astype(float) / 255
    high, low = rgb.max(axis=1), rgb.min(axis=1)
    return (high - low) / np.maximum(high, 1e-6)


def test_video_has_frames_and_masks_of_the_configured_shape():
    video = make_video(SyntheticConfig(num_frames=5, height=48, width=64), 0)
    assert video.frames.shape == (5, 48, 64, 3) and video.frames.dtype == np.uint8
    assert video.masks.shape == (5, 48, 64) and video.masks.dtype == bool
    assert video.object_masks.shape[0] == 5 and video.object_masks.shape[2:] == (48, 64)


def test_same_seed_and_index_give_identical_video():
    first, second = make_video(SyntheticConfig(), 3), make_video(SyntheticConfig(), 3)
    assert np.array_equal(first.frames, second.frames)
    assert np.array_equal(first.masks, second.masks)


def test_another_seed_or_index_gives_another_video():
    video = make_video(SyntheticConfig(seed=0), 3)
    assert not np.array_equal(video.frames, make_video(SyntheticConfig(seed=1), 3).frames)
    assert not np.array_equal(video.frames, make_video(SyntheticConfig(seed=0), 4).frames)


def test_number_of_objects_is_within_the_configured_range():
    counts = {
        make_video(SyntheticConfig(min_objects=1, max_objects=3), i).object_masks.shape[1] for i in range(20)
    }
    assert counts <= {1, 2, 3} and len(counts) > 1


def test_every_frame_has_foreground():
    for index in range(10):
        assert make_video(SyntheticConfig(), index).masks.any(axis=(1, 2)).all()


def test_objects_move_between_frames():
    for index in range(10):
        masks = make_video(SyntheticConfig(), index).masks
        assert (masks[0] != masks[-1]).any()


def test_background_moves_with_the_camera():
    video = make_video(SyntheticConfig(min_objects=0, max_objects=0, camera_speed=3.0), 0)
    assert not video.masks.any()
    assert np.abs(video.frames[0].astype(int) - video.frames[-1]).mean() > 2


def test_object_masks_are_disjoint_and_their_union_is_the_mask():
    video = make_video(SyntheticConfig(min_objects=3, max_objects=3), 5)
    assert video.object_masks.sum(axis=1).max() <= 1
    assert np.array_equal(video.object_masks.any(axis=1), video.masks)


def test_objects_are_more_saturated_than_background():
    for index in range(8):
        video = make_video(SyntheticConfig(), index)
        objects = saturation(video.frames[video.masks])
        background = saturation(video.frames[~video.masks])
        assert objects.mean() > background.mean() + 0.3


def test_a_video_is_generated_in_well_under_a_tenth_of_a_second():
    make_video(SyntheticConfig(), 0)  # warm-up
    start = time.perf_counter()
    for index in range(5):
        make_video(SyntheticConfig(num_frames=12, height=128, width=128), index)
    assert (time.perf_counter() - start) / 5 < 0.1


def test_min_objects_above_max_objects_is_a_config_error():
    with pytest.raises(ConfigError):
        make_video(SyntheticConfig(min_objects=3, max_objects=1), 0)


def test_write_frames_writes_jpegs_and_binary_masks_without_leftovers(tmp_path):
    video = make_video(SMALL, 0)
    write_frames(video, tmp_path / "frames", tmp_path / "masks")
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == [f"{t:05d}.jpg" for t in range(4)]
    mask = np.asarray(Image.open(tmp_path / "masks" / "00002.png"))
    assert set(np.unique(mask)) <= {0, 255}
    assert np.array_equal(mask == 255, video.masks[2])
    frame = np.asarray(Image.open(tmp_path / "frames" / "00002.jpg"))
    assert np.abs(frame.astype(int) - video.frames[2]).mean() < 4  # quality 95


def test_write_dataset_uses_the_davis_layout(tmp_path):
    names = write_dataset(tmp_path, SMALL)
    assert names == ["synthetic-0000", "synthetic-0001"]
    assert (tmp_path / "ImageSets" / "40p" / "all.txt").read_text().split() == names
    for name in names:
        assert len(list((tmp_path / "JPEGImages" / "40p" / name).glob("*.jpg"))) == 4
        assert len(list((tmp_path / "Annotations" / "40p" / name).glob("*.png"))) == 4
    assert not list(tmp_path.rglob("*.tmp"))


def test_hsv_saturation_helper_matches_colorsys():
    pixels = np.array([[200, 30, 30], [90, 90, 90]], np.uint8)
    expected = [colorsys.rgb_to_hsv(*(p / 255))[1] for p in pixels]
    assert np.allclose(saturation(pixels), expected)
