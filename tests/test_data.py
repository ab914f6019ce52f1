import logging

import av
import numpy as np
import pytest
import torch
from PIL import Image

from objectness.config import DataConfig, SyntheticConfig
from objectness.data.pairs import PairDataset, build_pair_dataset
from objectness.data.sources import build_videos
from objectness.data.video import DataError, Video

SMALL = dict(short_edge=32, scale_range=(0.9, 1.0), crop_size=(24, 32))


def random_frame(rng, height=36, width=48) -> np.ndarray:
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def write_frame_folder(folder, num_frames, height=36, width=48, seed=0) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for t in range(num_frames):
        Image.fromarray(random_frame(rng, height, width)).save(folder / f"{t:05d}.jpg")


def write_video_file(path, num_frames, height=48, width=64) -> None:
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=24)
        stream.height, stream.width, stream.pix_fmt = height, width, "yuv420p"
        for _ in range(num_frames):
            frame = av.VideoFrame.from_ndarray(random_frame(rng, height, width), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def write_davis(root, sequences: dict, resolution="480p") -> None:
    for name, num_frames in sequences.items():
        write_frame_folder(root / "JPEGImages" / resolution / name, num_frames)
        (root / "Annotations" / resolution / name).mkdir(parents=True)


def dataset_of(frames: list, **overrides) -> PairDataset:
    return PairDataset(
        [Video("video", frames)], DataConfig(source="unused", **{**SMALL, **overrides}), seed=0
    )


# --- pairs -----------------------------------------------------------------------------


def test_pair_has_the_crop_shape_and_values_in_unit_range():
    rng = np.random.default_rng(0)
    item = dataset_of([random_frame(rng) for _ in range(5)])[0]
    assert item["frames"].shape == (2, 3, 24, 32) and item["frames"].dtype == torch.float32
    assert 0 <= item["frames"].min() and item["frames"].max() <= 1
    assert item["bad_frames"] == 0


def test_pair_is_a_pure_function_of_seed_and_index():
    rng = np.random.default_rng(0)
    frames = [random_frame(rng) for _ in range(5)]
    first, second = dataset_of(frames), dataset_of(frames)
    later = [second[k]["frames"] for k in (9, 3, 7)]  # any order of access
    assert all(torch.equal(first[k]["frames"], x) for k, x in zip((9, 3, 7), later))


def test_pairs_differ_across_indices_and_seeds():
    rng = np.random.default_rng(0)
    dataset = dataset_of([random_frame(rng) for _ in range(5)])
    assert not torch.equal(dataset[0]["frames"], dataset[1]["frames"])
    other_seed = PairDataset(dataset.videos, dataset.cfg, seed=1)
    assert not torch.equal(dataset[0]["frames"], other_seed[0]["frames"])


def test_indices_beyond_the_number_of_pairs_work():
    rng = np.random.default_rng(0)
    dataset = dataset_of([random_frame(rng) for _ in range(3)])
    assert len(dataset) == 2
    assert dataset[10**9]["frames"].shape == (2, 3, 24, 32)


def test_pair_frames_are_gap_apart_in_either_order():
    frames = [np.full((36, 48, 3), 20 * t, np.uint8) for t in range(8)]  # frame t has value 20 t
    dataset = dataset_of(frames, gap=3, hflip=False)
    steps = {
        round(float((item["frames"][1] - item["frames"][0]).mean() * 255 / 20))
        for item in map(dataset.__getitem__, range(40))
    }
    assert steps == {-3, 3}


def test_crop_and_flip_are_the_same_on_both_frames():
    frame = random_frame(np.random.default_rng(0))
    dataset = dataset_of([frame, frame.copy()])
    for k in range(10):
        pair = dataset[k]["frames"]
        assert torch.equal(pair[0], pair[1])


def test_horizontal_flip_happens_for_some_pairs_only():
    ramp = np.broadcast_to(np.linspace(0, 255, 48).astype(np.uint8)[None, :, None], (36, 48, 3))
    dataset = dataset_of([ramp, ramp], scale_range=(1.0, 1.0), crop_size=(32, 42))
    increasing = {
        bool(dataset[k]["frames"][0, 0, 0, -1] > dataset[k]["frames"][0, 0, 0, 0]) for k in range(20)
    }
    assert increasing == {True, False}


def test_portrait_frames_are_turned_to_landscape():
    ramp = np.broadcast_to(np.linspace(0, 255, 60).astype(np.uint8)[:, None, None], (60, 30, 3)).copy()
    pair = dataset_of([ramp, ramp], short_edge=30, crop_size=(30, 60), scale_range=(1.0, 1.0))[0]["frames"]
    assert pair[0, 0].std(dim=0).max() < 0.02  # the vertical ramp now runs along the width
    assert pair[0, 0].std(dim=1).min() > 0.2


def test_frames_smaller_than_the_crop_are_enlarged_to_fit():
    rng = np.random.default_rng(0)
    item = dataset_of([random_frame(rng, 10, 12) for _ in range(2)], short_edge=8)[0]
    assert item["frames"].shape == (2, 3, 24, 32)


def test_synthetic_source_gives_pairs():
    cfg = DataConfig(
        source="synthetic",
        synthetic=SyntheticConfig(num_videos=2, num_frames=3, height=32, width=32),
        **SMALL,
    )
    dataset = build_pair_dataset(cfg, seed=0)
    assert [len(v) for v in dataset.videos] == [3, 3] and len(dataset) == 4
    assert dataset[0]["frames"].shape == (2, 3, 24, 32)


# --- layouts ---------------------------------------------------------------------------


def test_davis_root_uses_the_largest_resolution_and_the_split(tmp_path):
    write_davis(tmp_path, {"bear": 3, "boat": 4, "car": 2}, "480p")
    write_davis(tmp_path, {"bear": 2}, "240p")
    (tmp_path / "ImageSets" / "480p").mkdir(parents=True)
    (tmp_path / "ImageSets" / "480p" / "train.txt").write_text("boat\nbear\n")
    videos = build_videos(DataConfig(source=str(tmp_path), davis_split="train"))
    assert [(v.name, len(v)) for v in videos] == [("boat", 4), ("bear", 3)]


def test_davis_2016_image_sets_format_gives_sequence_names(tmp_path):
    write_davis(tmp_path, {"bear": 3, "boat": 2, "car": 2})
    lines = [
        f"/JPEGImages/480p/{s}/{t:05d}.jpg /Annotations/480p/{s}/{t:05d}.png"
        for s in ("car", "bear")
        for t in range(2)
    ]
    (tmp_path / "ImageSets" / "480p").mkdir(parents=True)
    (tmp_path / "ImageSets" / "480p" / "val.txt").write_text("\n".join(lines) + "\n")
    videos = build_videos(DataConfig(source=str(tmp_path), davis_split="val"))
    assert [v.name for v in videos] == ["car", "bear"]


def test_davis_without_split_uses_every_sequence(tmp_path):
    write_davis(tmp_path, {"b": 2, "a": 3})
    videos = build_videos(DataConfig(source=str(tmp_path), davis_split=None))
    assert [v.name for v in videos] == ["a", "b"]


def test_jpegimages_without_resolution_level_holds_the_sequences(tmp_path):
    write_frame_folder(tmp_path / "JPEGImages" / "frog", 3)
    write_frame_folder(tmp_path / "JPEGImages" / "cheetah", 2)
    (tmp_path / "GroundTruth").mkdir()
    assert [v.name for v in build_videos(DataConfig(source=str(tmp_path)))] == ["cheetah", "frog"]


def test_missing_davis_split_list_is_a_data_error(tmp_path):
    write_davis(tmp_path, {"a": 3})
    with pytest.raises(DataError, match="davis_split=null"):
        build_videos(DataConfig(source=str(tmp_path), davis_split="train"))


def test_folder_of_frame_folders_lists_frames_in_natural_order(tmp_path):
    rng = np.random.default_rng(0)
    for video in ("clip2", "clip10"):
        (tmp_path / video).mkdir()
        for t in (1, 2, 10):
            Image.fromarray(random_frame(rng)).save(tmp_path / video / f"frame{t}.png")
    (tmp_path / "clip2" / "notes.txt").write_text("not a frame")
    videos = build_videos(DataConfig(source=str(tmp_path)))
    assert [v.name for v in videos] == ["clip2", "clip10"]
    assert [p.name for p in videos[0].frames] == ["frame1.png", "frame2.png", "frame10.png"]
    assert videos[0].read(2).shape == (36, 48, 3)


def test_video_file_is_decoded_with_all_its_frames(tmp_path):
    write_video_file(tmp_path / "clip.mp4", num_frames=7)
    videos = build_videos(DataConfig(source=str(tmp_path / "clip.mp4"), short_edge=400, crop_size=(32, 32)))
    assert [v.name for v in videos] == ["clip"] and len(videos[0]) == 7
    assert videos[0].read(6).shape == (48, 64, 3)


def test_video_frames_are_downscaled_to_the_short_edge(tmp_path):
    write_video_file(tmp_path / "clip.mp4", num_frames=3, height=96, width=128)
    cfg = DataConfig(
        source=str(tmp_path / "clip.mp4"), short_edge=40, scale_range=(0.9, 1.0), crop_size=(32, 32)
    )
    assert build_videos(cfg)[0].read(0).shape == (40, 53, 3)


def test_folder_of_video_files_skips_too_short_videos(tmp_path, caplog):
    write_video_file(tmp_path / "a.mp4", num_frames=4)
    write_video_file(tmp_path / "b.avi", num_frames=1)
    with caplog.at_level(logging.WARNING):
        videos = build_videos(DataConfig(source=str(tmp_path), crop_size=(32, 32)))
    assert [(v.name, len(v)) for v in videos] == [("a", 4)]
    assert "'b'" in caplog.text


# --- bad input -------------------------------------------------------------------------


def test_corrupt_jpeg_is_skipped_counted_and_named(tmp_path, caplog):
    write_frame_folder(tmp_path / "clip", 4)
    broken = tmp_path / "clip" / "00003.jpg"
    data = broken.read_bytes()
    broken.write_bytes(data[: len(data) // 2])  # truncated: the header opens, the pixels do not
    dataset = build_pair_dataset(DataConfig(source=str(tmp_path), **SMALL), seed=0)
    with caplog.at_level(logging.WARNING):
        items = [dataset[k] for k in range(30)]
    assert all(item["frames"].shape == (2, 3, 24, 32) for item in items)
    assert sum(item["bad_frames"] for item in items) > 0
    assert "00003.jpg" in caplog.text


def test_pairs_that_are_all_unreadable_give_a_data_error(tmp_path):
    (tmp_path / "clip").mkdir()
    for t in range(3):
        (tmp_path / "clip" / f"{t:05d}.jpg").write_bytes(b"not a jpeg")
    dataset = build_pair_dataset(DataConfig(source=str(tmp_path), **SMALL), seed=0)
    with pytest.raises(DataError, match="unreadable"):
        dataset[0]


def test_missing_path_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        build_videos(DataConfig(source=str(tmp_path / "nowhere")))


def test_empty_folder_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no videos found"):
        build_videos(DataConfig(source=str(tmp_path)))


def test_single_video_with_one_frame_is_a_data_error(tmp_path):
    write_video_file(tmp_path / "still.mp4", num_frames=1)
    with pytest.raises(DataError, match="1 frame"):
        build_videos(DataConfig(source=str(tmp_path / "still.mp4"), crop_size=(32, 32)))


# --- real data -------------------------------------------------------------------------


def test_davis2016_has_30_videos_and_2079_frames(shared_data):
    root = shared_data / "davis2016"
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    dataset = build_pair_dataset(DataConfig(source=str(root)), seed=0)
    assert len(dataset.videos) == 30
    assert sum(len(video) for video in dataset.videos) == 2079
    assert dataset[0]["frames"].shape == (2, 3, 384, 384)


def test_color_jitter_changes_both_frames_of_a_pair_alike():
    frame = random_frame(np.random.default_rng(0))
    plain = dataset_of([frame, frame])[0]["frames"]
    jittered = dataset_of([frame, frame], color_jitter=0.4)[0]["frames"]
    assert torch.equal(jittered[0], jittered[1])  # one draw for the pair
    assert not torch.allclose(jittered, plain, atol=1e-3)
    assert 0 <= jittered.min() and jittered.max() <= 1
