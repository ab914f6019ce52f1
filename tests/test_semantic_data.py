"""Semantic-segmentation sets read in their published layouts; bad files fail in one line naming them."""
import numpy as np
import pytest
from PIL import Image
from semantic_fixtures import (
    HEIGHT,
    WIDTH,
    label_map,
    make_camvid,
    make_folders,
    make_voc,
    save_index_png,
)

from objectness.config import SemanticDataConfig
from objectness.data.video import DataError
from objectness.semantic.data import (
    CAMVID_CLASSES,
    VOC_CLASSES,
    CropDataset,
    load_semantic_set,
)
from objectness.semantic.metrics import VOID


def data_config(dataset, root, **kwargs):
    return SemanticDataConfig(dataset=dataset, root=str(root), workers=0, **kwargs)


def test_voc_palette_pngs_read_as_class_indices_with_void(tmp_path):
    make_voc(tmp_path)
    semantic_set = load_semantic_set(data_config("voc", tmp_path / "VOCdevkit"), "train")
    image, label = semantic_set.read(1)
    assert semantic_set.classes == VOC_CLASSES and len(semantic_set) == 3
    assert image.shape == (HEIGHT, WIDTH, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(label, label_map(1, 21))
    assert (label[-2:] == VOID).all()


def test_sbd_train_aug_reads_index_pngs_from_segmentation_class_aug(tmp_path):
    voc = make_voc(tmp_path, aug=True)
    semantic_set = load_semantic_set(data_config("voc", voc), "train_aug")
    assert [s.label.parent.name for s in semantic_set.samples] == ["SegmentationClassAug"] * 3
    assert [s.name for s in semantic_set.samples] == ["2007_000000", "2007_000001", "2007_000002"]
    np.testing.assert_array_equal(semantic_set.read(2)[1], label_map(2, 21))


def test_voc_without_sbd_says_how_to_train_on_train(tmp_path):
    voc = make_voc(tmp_path)
    with pytest.raises(DataError, match="data.train_split=train"):
        load_semantic_set(data_config("voc", voc), "train_aug")


def test_folders_layout_reads_class_names_and_split_lists(tmp_path):
    make_folders(tmp_path, count=4)
    cfg = data_config("folders", tmp_path)
    assert load_semantic_set(cfg, "train").classes == ["road", "car", "sky"]
    assert len(load_semantic_set(cfg, "val")) == 2
    assert len(load_semantic_set(cfg, "all")) == 4
    np.testing.assert_array_equal(load_semantic_set(cfg, "train").read(3)[1], label_map(3, 3))


def test_camvid_unlabelled_becomes_void_and_splits_join_with_plus(tmp_path):
    make_camvid(tmp_path)
    semantic_set = load_semantic_set(data_config("camvid", tmp_path), "train+train")
    assert semantic_set.classes == CAMVID_CLASSES and len(semantic_set) == 4
    label = semantic_set.read(0)[1]
    assert (label[-2:] == VOID).all() and label[:-2].max() < 11


def test_a_label_value_outside_the_classes_names_the_file(tmp_path):
    make_folders(tmp_path)
    bad = tmp_path / "labels" / "im01.png"
    save_index_png(bad, np.full((HEIGHT, WIDTH), 7, np.uint8))
    semantic_set = load_semantic_set(data_config("folders", tmp_path), "train")
    with pytest.raises(DataError, match=r"im01\.png: label value\(s\) 7 outside the 3 classes"):
        semantic_set.check(progress=False)


def test_a_label_of_another_size_than_its_image_names_the_file(tmp_path):
    make_folders(tmp_path)
    save_index_png(tmp_path / "labels" / "im02.png", np.zeros((HEIGHT, WIDTH + 1), np.uint8))
    semantic_set = load_semantic_set(data_config("folders", tmp_path), "train")
    with pytest.raises(DataError, match=r"im02\.png: label is 49 x 40 but its image .*im02\.png is 48 x 40"):
        semantic_set.check(progress=False)
    with pytest.raises(DataError, match="im02"):
        semantic_set.read(2)


def test_a_missing_label_names_the_file(tmp_path):
    make_folders(tmp_path)
    (tmp_path / "labels" / "im03.png").unlink()
    with pytest.raises(DataError, match=r"im03\.png: missing label of image"):
        load_semantic_set(data_config("folders", tmp_path), "train")


def test_an_rgb_label_is_refused_with_its_mode(tmp_path):
    make_folders(tmp_path)
    Image.new("RGB", (WIDTH, HEIGHT)).save(tmp_path / "labels" / "im00.png")
    with pytest.raises(DataError, match=r"im00\.png: expected an index PNG .* mode RGB"):
        load_semantic_set(data_config("folders", tmp_path), "train").read(0)


def test_a_missing_class_names_file_is_one_clear_error(tmp_path):
    make_folders(tmp_path)
    (tmp_path / "classes.txt").unlink()
    with pytest.raises(DataError, match="class-names file not found"):
        load_semantic_set(data_config("folders", tmp_path), "train")


def test_training_crops_have_the_crop_size_pad_with_void_and_depend_only_on_seed_and_index(tmp_path):
    make_folders(tmp_path)
    cfg = data_config("folders", tmp_path, short_edge=32, scale_range=(1.0, 1.0), crop_size=(48, 48))
    dataset = CropDataset(load_semantic_set(cfg, "train"), cfg, seed=3)
    item = dataset[5]
    assert item["image"].shape == (3, 48, 48) and item["label"].shape == (48, 48)
    assert (item["label"][32:] == VOID).all()  # 40 x 48 resized to 32 x 38, padded to 48 x 48
    again = CropDataset(load_semantic_set(cfg, "train"), cfg, seed=3)[5]
    assert (again["image"] == item["image"]).all() and (again["label"] == item["label"]).all()


def test_one_epoch_of_crops_visits_each_image_once(tmp_path):
    make_folders(tmp_path, count=4)
    cfg = data_config("folders", tmp_path, hflip=False, scale_range=(1.0, 1.0), short_edge=HEIGHT,
                      crop_size=(HEIGHT, WIDTH))
    dataset = CropDataset(load_semantic_set(cfg, "train"), cfg, seed=0)
    firsts = {tuple(dataset[k]["label"][0].tolist()) for k in range(4)}
    assert len(firsts) == 4


def test_the_shared_camvid_set_reads_in_segnets_layout(shared_data):
    root = shared_data / "camvid"
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    cfg = data_config("camvid", root)
    assert (len(load_semantic_set(cfg, "train")), len(load_semantic_set(cfg, "test"))) == (367, 233)
    image, label = load_semantic_set(cfg, "test").read(0)
    assert image.shape == (360, 480, 3) and label.shape == (360, 480)
    assert set(np.unique(label)) <= set(range(11)) | {VOID}
