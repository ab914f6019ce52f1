"""Benchmark loaders: fixtures written in each published layout, quirks included."""

import numpy as np
import pytest
from PIL import Image

from objectness.data.video import DataError
from objectness.evaluation.benchmarks import (
    BENCHMARKS,
    BenchmarkError,
    load_ground_truth,
    load_saliency_benchmark,
    load_saliency_mask,
    load_video_benchmark,
    read_mask,
)

H, W = 8, 12


def write_image(path, array) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)


def write_frames(folder, names) -> None:
    for name in names:
        write_image(folder / name, np.full((H, W, 3), 90))


def box(top, left, height=3, width=4, value=255, channels=None, background=0) -> np.ndarray:
    """A (H, W) or (H, W, channels) mask holding ``value`` in one box."""
    shape = (H, W) if channels is None else (H, W, channels)
    mask = np.full(shape, background, dtype=np.uint8)
    mask[top : top + height, left : left + width] = value
    return mask


def region(top, left, height=3, width=4) -> np.ndarray:
    return box(top, left, height, width) > 0


# DAVIS 2016


def write_davis(root, sequences: dict, resolution="480p") -> None:
    for name, num_frames in sequences.items():
        names = [f"{t:05d}" for t in range(num_frames)]
        write_frames(root / "JPEGImages" / resolution / name, [f"{n}.jpg" for n in names])
        for t, n in enumerate(names):
            write_image(root / "Annotations" / resolution / name / f"{n}.png", box(t, 0))


def write_davis_list(root, split, lines, resolution="480p") -> None:
    path = root / "ImageSets" / resolution / f"{split}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def test_davis_pairs_every_frame_with_its_annotation(tmp_path):
    write_davis(tmp_path, {"bear": 3, "boat": 2})
    davis2016_lines = [
        f"/JPEGImages/480p/bear/{t:05d}.jpg /Annotations/480p/bear/{t:05d}.png" for t in range(3)
    ]
    write_davis_list(tmp_path, "val", davis2016_lines)
    (sequence,) = load_video_benchmark("davis2016", tmp_path)
    assert sequence.name == "bear" and len(sequence) == 3
    assert list(sequence.annotations) == [0, 1, 2]
    for index, masks in sequence.annotations.items():
        assert [mask.stem for mask in masks] == [sequence.frames[index].stem]
    np.testing.assert_array_equal(load_ground_truth(sequence, 2), region(2, 0))


def test_davis_reads_a_list_of_names_for_any_split(tmp_path):
    write_davis(tmp_path, {"bear": 2, "boat": 2, "car": 2}, resolution="240p")
    write_davis_list(tmp_path, "train", ["car", "bear"], resolution="240p")
    sequences = load_video_benchmark("davis2016", tmp_path, split="train")
    assert [s.name for s in sequences] == ["car", "bear"]


def test_davis_defaults_to_480p_among_several_resolutions(tmp_path):
    write_davis(tmp_path, {"bear": 2}, resolution="480p")
    write_davis(tmp_path, {"bear": 3}, resolution="1080p")
    write_davis_list(tmp_path, "val", ["bear"])
    assert len(load_video_benchmark("davis2016", tmp_path)[0]) == 2
    write_davis_list(tmp_path, "val", ["bear"], resolution="1080p")
    assert len(load_video_benchmark("davis2016", tmp_path, resolution="1080p")[0]) == 3


def test_davis_missing_split_names_the_list_and_the_available_ones(tmp_path):
    write_davis(tmp_path, {"bear": 2})
    write_davis_list(tmp_path, "train", ["bear"])
    with pytest.raises(BenchmarkError, match=r"ImageSets/480p/val\.txt.*available splits: train"):
        load_video_benchmark("davis2016", tmp_path)


def test_davis_annotation_without_a_frame_is_an_error(tmp_path):
    write_davis(tmp_path, {"bear": 2})
    write_davis_list(tmp_path, "val", ["bear"])
    stray = tmp_path / "Annotations" / "480p" / "bear" / "00007.png"
    write_image(stray, box(0, 0))
    with pytest.raises(BenchmarkError, match=str(stray)):
        load_video_benchmark("davis2016", tmp_path)


# SegTrackv2


def test_segtrackv2_reads_three_channel_bmp_masks(tmp_path):
    names = [f"frog_{t:05d}" for t in range(3)]
    write_frames(tmp_path / "JPEGImages" / "frog", [f"{n}.png" for n in names])
    for t, n in enumerate(names):
        write_image(tmp_path / "GroundTruth" / "frog" / f"{n}.bmp", box(t, 2, channels=3))
    (sequence,) = load_video_benchmark("segtrackv2", tmp_path)
    assert list(sequence.annotations) == [0, 1, 2]
    assert sequence.annotations[1][0].name == "frog_00001.bmp"
    np.testing.assert_array_equal(load_ground_truth(sequence, 1), region(1, 2))


def test_segtrackv2_merges_the_objects_of_numbered_subfolders(tmp_path):
    names = [f"bmx_{t:05d}" for t in range(2)]
    write_frames(tmp_path / "JPEGImages" / "bmx", [f"{n}.png" for n in names])
    for n in names:
        write_image(tmp_path / "GroundTruth" / "bmx" / "1" / f"{n}.png", box(0, 0, channels=3))
        write_image(tmp_path / "GroundTruth" / "bmx" / "2" / f"{n}.bmp", box(4, 6, channels=3))
    (sequence,) = load_video_benchmark("segtrackv2", tmp_path)
    assert [mask.parent.name for mask in sequence.annotations[1]] == ["1", "2"]
    np.testing.assert_array_equal(load_ground_truth(sequence, 1), region(0, 0) | region(4, 6))


def test_segtrackv2_pairs_differently_named_masks_by_order_when_counts_agree(tmp_path):
    write_frames(tmp_path / "JPEGImages" / "girl", [f"girl_{t}.bmp" for t in (8, 9, 10)])
    for i, t in enumerate((8, 9, 10)):
        write_image(tmp_path / "GroundTruth" / "girl" / f"{t - 8}.png", box(i, 0))
    (sequence,) = load_video_benchmark("segtrackv2", tmp_path)
    assert [sequence.annotations[i][0].name for i in range(3)] == ["0.png", "1.png", "2.png"]
    np.testing.assert_array_equal(load_ground_truth(sequence, 2), region(2, 0))


def test_segtrackv2_unmatched_names_with_other_counts_are_an_error(tmp_path):
    write_frames(tmp_path / "JPEGImages" / "girl", [f"girl_{t}.png" for t in range(3)])
    write_image(tmp_path / "GroundTruth" / "girl" / "mask_0.png", box(0, 0))
    with pytest.raises(BenchmarkError, match=r"GroundTruth/girl/mask_0\.png.*1 masks for 3 frames"):
        load_video_benchmark("segtrackv2", tmp_path)


def test_segtrackv2_follows_imagesets_all_list(tmp_path):
    for name in ("frog", "worm"):
        write_frames(tmp_path / "JPEGImages" / name, ["a.png"])
        write_image(tmp_path / "GroundTruth" / name / "a.png", box(0, 0))
    (tmp_path / "ImageSets").mkdir()
    (tmp_path / "ImageSets" / "all.txt").write_text("*worm\n")
    assert [s.name for s in load_video_benchmark("segtrackv2", tmp_path)] == ["worm"]


# FBMS-59


def write_fbms(root) -> None:
    """Testset/cars1 (greyscale .pgm, black background) and Trainingset/ducks01 (colour .ppm,
    white background, with a PROB map to skip), annotated every 4th frame."""
    cars = root / "Testset" / "cars1"
    write_frames(cars, [f"cars1_{t:02d}.jpg" for t in range(1, 10)])
    two_objects = box(0, 0, value=80) | box(4, 6, value=200)
    write_image(cars / "GroundTruth" / "cars1_01_gt.pgm", two_objects)
    write_image(cars / "GroundTruth" / "cars1_05_gt.pgm", box(1, 1, value=80))
    (cars / "GroundTruth" / "cars1Def.dat").write_text("Ground truth definition file; do not change!\n")
    ducks = root / "Trainingset" / "ducks01"
    write_frames(ducks, [f"ducks01_{t:04d}.jpg" for t in range(1, 6)])
    red_duck = np.full((H, W, 3), 255, dtype=np.uint8)
    red_duck[region(2, 3)] = (255, 0, 0)
    write_image(ducks / "GroundTruth" / "ducks01_0001_gt.ppm", red_duck)
    grey_duck = box(5, 5, value=128, channels=3, background=255)
    write_image(ducks / "GroundTruth" / "ducks01_0005_gt.ppm", grey_duck)
    write_image(ducks / "GroundTruth" / "ducks01_0001_PROB_gt.ppm", np.zeros((H, W, 3)))


def test_fbms_keeps_the_sparse_annotations_by_frame_number(tmp_path):
    write_fbms(tmp_path)
    ducks, cars = load_video_benchmark("fbms59", tmp_path)
    assert (ducks.name, len(ducks), list(ducks.annotations)) == ("ducks01", 5, [0, 4])
    assert (cars.name, len(cars), list(cars.annotations)) == ("cars1", 9, [0, 4])
    assert cars.annotations[4][0].name == "cars1_05_gt.pgm"
    assert all(len(masks) == 1 for masks in ducks.annotations.values())  # the PROB map left out


def test_fbms_pgm_background_is_black_and_ppm_background_is_white(tmp_path):
    write_fbms(tmp_path)
    ducks, cars = load_video_benchmark("fbms59", tmp_path)
    np.testing.assert_array_equal(load_ground_truth(cars, 0), region(0, 0) | region(4, 6))
    np.testing.assert_array_equal(load_ground_truth(ducks, 0), region(2, 3))
    np.testing.assert_array_equal(load_ground_truth(ducks, 4), region(5, 5))


def test_fbms_split_selects_the_test_set(tmp_path):
    write_fbms(tmp_path)
    assert [s.name for s in load_video_benchmark("fbms59", tmp_path, split="test")] == ["cars1"]
    assert [s.name for s in load_video_benchmark("fbms59", tmp_path / "Testset")] == ["cars1"]


def test_fbms_annotation_of_a_missing_frame_is_an_error(tmp_path):
    write_fbms(tmp_path)
    stray = tmp_path / "Testset" / "cars1" / "GroundTruth" / "cars1_40_gt.png"
    write_image(stray, box(0, 0))
    with pytest.raises(BenchmarkError, match=str(stray)):
        load_video_benchmark("fbms59", tmp_path, split="test")


# Generic videos


def test_video_masks_may_annotate_a_subset_of_frames(tmp_path):
    write_frames(tmp_path / "frames" / "walk", [f"{t:03d}.jpg" for t in range(5)])
    write_image(tmp_path / "masks" / "walk" / "003.png", box(3, 3))
    (sequence,) = load_video_benchmark("video", tmp_path)
    assert (len(sequence), list(sequence.annotations)) == (5, [3])
    np.testing.assert_array_equal(load_ground_truth(sequence, 3), region(3, 3))
    with pytest.raises(BenchmarkError, match="frame 0 of sequence 'walk' is not annotated"):
        load_ground_truth(sequence, 0)


def test_video_without_masks_names_the_missing_folder(tmp_path):
    write_frames(tmp_path / "frames" / "walk", ["000.jpg"])
    with pytest.raises(BenchmarkError, match=str(tmp_path / "masks" / "walk")):
        load_video_benchmark("video", tmp_path)


# Saliency


def write_saliency(images, masks, stems=("a", "b")) -> None:
    for i, stem in enumerate(stems):
        write_image(images / f"{stem}.jpg", np.full((H, W, 3), 50))
        write_image(masks / f"{stem}.png", box(i, i))


def test_saliency_pairs_images_and_masks_by_name(tmp_path):
    write_saliency(tmp_path / "images", tmp_path / "masks")
    items = load_saliency_benchmark("saliency", tmp_path)
    assert [(item.name, item.image.name, item.mask.name) for item in items] == [
        ("a", "a.jpg", "a.png"),
        ("b", "b.jpg", "b.png"),
    ]
    np.testing.assert_array_equal(load_saliency_mask(items[1]), region(1, 1))


@pytest.mark.parametrize(
    "images, masks", [("Imgs", "GT"), ("Image", "Masks"), ("ECSSD-images", "ground_truth_mask")]
)
def test_saliency_finds_the_common_folder_names(tmp_path, images, masks):
    write_saliency(tmp_path / images, tmp_path / masks)
    assert len(load_saliency_benchmark("saliency", tmp_path)) == 2


def test_saliency_takes_explicit_folders(tmp_path):
    write_saliency(tmp_path / "x", tmp_path / "y")
    assert len(load_saliency_benchmark("saliency", images=tmp_path / "x", masks=tmp_path / "y")) == 2
    with pytest.raises(BenchmarkError, match="name them explicitly"):
        load_saliency_benchmark("saliency", tmp_path)


@pytest.mark.parametrize("parent", ["", "DUTS-TE"])
def test_duts_reads_the_test_set_from_its_folder_or_parent(tmp_path, parent):
    root = tmp_path / parent
    write_saliency(root / "DUTS-TE-Image", root / "DUTS-TE-Mask", stems=("ILSVRC2012_test_00000003", "sun_a"))
    assert [item.name for item in load_saliency_benchmark("duts", tmp_path)] == [
        "ILSVRC2012_test_00000003",
        "sun_a",
    ]


def test_saliency_image_without_mask_is_an_error(tmp_path):
    write_saliency(tmp_path / "images", tmp_path / "masks")
    write_image(tmp_path / "images" / "c.jpg", np.zeros((H, W, 3)))
    with pytest.raises(BenchmarkError, match=str(tmp_path / "images" / "c.jpg")):
        load_saliency_benchmark("saliency", tmp_path)


def test_saliency_mask_is_binarised_above_128(tmp_path):
    soft = np.array([[0, 128, 129, 255]], dtype=np.uint8)
    write_image(tmp_path / "masks" / "a.png", soft)
    write_image(tmp_path / "images" / "a.jpg", np.zeros((1, 4, 3)))
    (item,) = load_saliency_benchmark("saliency", tmp_path)
    assert load_saliency_mask(item).tolist() == [[False, False, True, True]]


# Masks, errors and the table


def test_palette_masks_are_foreground_wherever_the_index_is_not_zero(tmp_path):
    indices = np.array([[0, 1, 2, 0]], dtype=np.uint8)
    image = Image.fromarray(indices, mode="P")
    image.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0])
    image.save(tmp_path / "m.png")
    assert read_mask(tmp_path / "m.png").tolist() == [[False, True, True, False]]


def test_jpeg_masks_ignore_compression_noise(tmp_path):
    write_image(tmp_path / "m.jpg", box(2, 2, height=4, width=6))
    np.testing.assert_array_equal(read_mask(tmp_path / "m.jpg"), region(2, 2, height=4, width=6))


@pytest.mark.parametrize("name", ["davis2016", "segtrackv2", "fbms59", "video", "duts", "saliency"])
def test_missing_root_is_a_one_line_data_error_naming_it(tmp_path, name):
    load = load_video_benchmark if BENCHMARKS[name].kind == "video" else load_saliency_benchmark
    with pytest.raises(DataError, match=str(tmp_path / "absent")):
        load(name, tmp_path / "absent")


def test_empty_benchmark_is_an_error(tmp_path):
    (tmp_path / "frames").mkdir()
    with pytest.raises(BenchmarkError, match=f"no sequences found for video in {tmp_path}"):
        load_video_benchmark("video", tmp_path)


def test_unknown_benchmark_lists_the_choices(tmp_path):
    with pytest.raises(BenchmarkError, match="davis2016, segtrackv2, fbms59, video"):
        load_video_benchmark("duts", tmp_path)


def test_benchmark_table_gives_kind_description_and_default_split():
    assert {name: b.kind for name, b in BENCHMARKS.items()} == {
        "davis2016": "video",
        "segtrackv2": "video",
        "fbms59": "video",
        "video": "video",
        "duts": "saliency",
        "saliency": "saliency",
    }
    assert BENCHMARKS["davis2016"].default_split == "val"
    assert all(b.description for b in BENCHMARKS.values())


# Real data (skipped where the shared data folder is absent)


def test_real_davis2016_training_split(shared_data):
    sequences = load_video_benchmark("davis2016", shared_data / "davis2016", split="train")
    assert len(sequences) == 30
    assert sum(len(s) for s in sequences) == 2079
    assert sum(len(s.annotations) for s in sequences) == 2079
    ground_truth = load_ground_truth(sequences[0], 0)
    assert ground_truth.shape == (240, 427) and ground_truth.any()
    assert sequences[0].read(0).shape == (240, 427, 3)


def test_real_sod(shared_data):
    items = load_saliency_benchmark("saliency", shared_data / "sod")
    assert len(items) == 300
    with Image.open(items[0].image) as image:
        assert load_saliency_mask(items[0]).shape == (image.height, image.width)
