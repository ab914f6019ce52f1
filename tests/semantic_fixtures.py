"""Tiny semantic-segmentation sets in each published layout, written by the tests themselves."""
from pathlib import Path

import numpy as np
from PIL import Image

from objectness.semantic.data import voc_palette

HEIGHT, WIDTH = 40, 48


def label_map(seed: int, num_classes: int, void: int = 255) -> np.ndarray:
    """(H, W) uint8: a class per vertical band, a void border at the bottom."""
    rng = np.random.default_rng(seed)
    label = np.repeat(rng.integers(num_classes, size=(1, WIDTH)), HEIGHT, axis=0).astype(np.uint8)
    label[-2:] = void
    return label


def image_of(label: np.ndarray) -> np.ndarray:
    """An RGB image whose colour tells the class: a set a small network learns in a few steps."""
    colours = np.array([(220, 40, 40), (40, 200, 60), (50, 60, 210), (230, 230, 40)] + [(128, 128, 128)] * 252,
                       dtype=np.uint8)
    return colours[label]


def save_index_png(path: Path, label: np.ndarray, palette: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(label, mode="P" if palette else "L")
    if palette:
        image.putpalette(voc_palette().reshape(-1).tolist())
    image.save(path)


def save_jpeg(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, quality=95)


def make_folders(root: Path, count: int = 4, classes=("road", "car", "sky")) -> Path:
    """ROOT/images/*.png, ROOT/labels/*.png, ROOT/classes.txt, ROOT/train.txt and ROOT/val.txt."""
    names = [f"im{i:02d}" for i in range(count)]
    for i, name in enumerate(names):
        label = label_map(i, len(classes))
        save_index_png(root / "labels" / f"{name}.png", label)
        (root / "images").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image_of(label)).save(root / "images" / f"{name}.png")
    (root / "classes.txt").write_text("\n".join(classes) + "\n")
    (root / "train.txt").write_text("\n".join(names) + "\n")
    (root / "val.txt").write_text("\n".join(names[:2]) + "\n")
    return root


def make_voc(root: Path, count: int = 3, aug: bool = False) -> Path:
    """VOCdevkit/VOC2012 with palette PNGs in SegmentationClass (and SBD-style index PNGs if aug)."""
    voc = root / "VOCdevkit" / "VOC2012"
    names = [f"2007_{i:06d}" for i in range(count)]
    for i, name in enumerate(names):
        label = label_map(i, 21)
        save_jpeg(voc / "JPEGImages" / f"{name}.jpg", image_of(label))
        save_index_png(voc / "SegmentationClass" / f"{name}.png", label, palette=True)
        if aug:
            save_index_png(voc / "SegmentationClassAug" / f"{name}.png", label)
    lists = voc / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    (lists / "train.txt").write_text("\n".join(names) + "\n")
    if aug:  # DeepLab's list: image and label paths on each line
        (lists / "train_aug.txt").write_text(
            "".join(f"/JPEGImages/{n}.jpg /SegmentationClassAug/{n}.png\n" for n in names))
    return voc


def make_camvid(root: Path, count: int = 2) -> Path:
    """SegNet's CamVid layout: train/, trainannot/ (11 = Unlabelled), train.txt."""
    names = [f"0001TP_{i:06d}" for i in range(count)]
    for i, name in enumerate(names):
        label = label_map(i, 11, void=11)
        save_jpeg(root / "train" / f"{name}.jpg", image_of(label))
        save_index_png(root / "trainannot" / f"{name}.png", label)
    (root / "train.txt").write_text("\n".join(names) + "\n")
    return root
