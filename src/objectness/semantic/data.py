"""Labelled images for semantic segmentation (docs/method.md#semantic-fine-tuning), read in their published layouts.

- ``camvid`` (SegNet's version): ROOT/<split>/<name>.jpg|png, ROOT/<split>annot/<name>.png,
  ROOT/<split>.txt; 11 classes, value 11 (Unlabelled) is void.
- ``voc`` (PASCAL VOC 2012, ROOT = VOC2012 or the VOCdevkit above it): JPEGImages/<name>.jpg,
  ImageSets/Segmentation/<split>.txt; labels in SegmentationClass/ (palette PNGs), or for a
  split named ``*aug*`` (SBD's train_aug, 10,582 images) in SegmentationClassAug/ (index PNGs);
  21 classes, 255 is void.
- ``folders``: ROOT/images/<name>.jpg|png, ROOT/labels/<name>.png (class indices, 255 void),
  ROOT/classes.txt (one class name a line: line k names class k), ROOT/<split>.txt (names),
  or the split ``all`` for every image.

Labels come out as uint8 class indices with 255 (VOID) for pixels that are not scored.
A training item k is a pure function of (seed, k), so a run resumes exactly by index.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from tqdm import tqdm

from ..config import FinetuneConfig, SemanticDataConfig
from ..data.video import DataError, natural_key, read_image
from .metrics import VOID

DATASETS = ("camvid", "voc", "folders")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

CAMVID_CLASSES = ["Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car",
                  "Pedestrian", "Bicyclist"]
CAMVID_COLOURS = [(128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
                  (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192)]
VOC_CLASSES = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor"]
# Splits used when data.train_split / data.eval_split are null.
DEFAULT_SPLITS = {"camvid": ("train", "test"), "voc": ("train_aug", "val"), "folders": ("train", "val")}


def voc_palette() -> np.ndarray:
    """(256, 3) uint8: PASCAL VOC's colour of each label value (0 black, 255 cream)."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    for index in range(256):
        value, colour = index, [0, 0, 0]
        for shift in range(7, -1, -1):
            for channel in range(3):
                colour[channel] |= ((value >> channel) & 1) << shift
            value >>= 3
        palette[index] = colour
    return palette


@dataclass(frozen=True)
class Sample:
    name: str
    image: Path
    label: Path


@dataclass
class SemanticSet:
    """The (image, label) files of one split, the class names, and how raw label values map to classes."""

    dataset: str
    split: str
    classes: list
    palette: np.ndarray  # (256, 3) uint8, colour of each class index (and of VOID)
    samples: list
    void_values: tuple = (VOID,)  # raw label values that are void

    def __len__(self) -> int:
        return len(self.samples)

    def read(self, i: int) -> tuple:
        """(uint8 (H, W, 3) RGB image, uint8 (H, W) class indices with VOID); DataError names a bad file."""
        sample = self.samples[i]
        image = read_image(sample.image)
        label = self.read_label(sample)
        if label.shape != image.shape[:2]:
            raise DataError(f"{sample.label}: label is {label.shape[1]} x {label.shape[0]} but its image "
                            f"{sample.image} is {image.shape[1]} x {image.shape[0]}")
        return image, label

    def read_label(self, sample: Sample) -> np.ndarray:
        label = _open(sample.label)
        if label.mode not in ("P", "L"):
            raise DataError(f"{sample.label}: expected an index PNG (mode P or L), got mode {label.mode}")
        raw = np.asarray(label)
        lookup = self._lookup()
        bad = [int(v) for v in np.unique(raw) if lookup[v] < 0]
        if bad:
            raise DataError(f"{sample.label}: label value(s) {', '.join(map(str, bad))} outside the "
                            f"{len(self.classes)} classes of {self.dataset} (0..{len(self.classes) - 1}, void "
                            f"{', '.join(map(str, self.void_values))})")
        return lookup[raw].astype(np.uint8)

    def _lookup(self) -> np.ndarray:
        """(256,) raw value -> class index, VOID, or -1 for a value that is neither."""
        lookup = np.full(256, -1, dtype=np.int16)
        lookup[: len(self.classes)] = np.arange(len(self.classes))
        lookup[list(self.void_values)] = VOID
        return lookup

    def check(self, progress: bool = True) -> None:
        """Read every label and every image's size: a bad file fails here, before any training."""
        for sample in tqdm(self.samples, desc=f"checking {self.dataset} {self.split}", unit="label",
                           disable=not progress, leave=False):
            size = _open(sample.image).size
            label = self.read_label(sample)
            if label.shape != (size[1], size[0]):
                raise DataError(f"{sample.label}: label is {label.shape[1]} x {label.shape[0]} but its image "
                                f"{sample.image} is {size[0]} x {size[1]}")


def _open(path: Path) -> Image.Image:
    try:
        image = Image.open(path)
        image.load()
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: cannot be read ({err})") from None
    return image


def load_semantic_set(cfg: SemanticDataConfig, split: str) -> SemanticSet:
    """The samples of ``split`` (names joined by '+' concatenate splits) of ``cfg.dataset`` at ``cfg.root``."""
    if cfg.dataset not in DATASETS:
        raise DataError(f"unknown dataset '{cfg.dataset}' (one of {', '.join(DATASETS)})")
    if not cfg.root:
        raise DataError(f"no data folder given for {cfg.dataset} (--data ROOT)")
    root = Path(cfg.root)
    if not root.is_dir():
        raise DataError(f"data folder not found: {root}")
    classes, palette, void_values, layout = {
        "camvid": lambda: (CAMVID_CLASSES, _palette(CAMVID_COLOURS), (11, VOID), _camvid_samples),
        "voc": lambda: (VOC_CLASSES, voc_palette(), (VOID,), _voc_samples),
        "folders": lambda: (_folder_classes(root, cfg.classes_file), voc_palette(), (VOID,), _folder_samples),
    }[cfg.dataset]()
    samples = [sample for part in split.split("+") for sample in layout(root, part)]
    if not samples:
        raise DataError(f"{root}: split '{split}' of {cfg.dataset} holds no images")
    for sample in samples:
        if not sample.image.is_file():
            raise DataError(f"{sample.image}: image not found (listed in split '{split}' of {root})")
        if not sample.label.is_file():
            raise DataError(f"{sample.label}: missing label of image {sample.image}")
    return SemanticSet(cfg.dataset, split, list(classes), palette, samples, void_values)


def _palette(colours: list) -> np.ndarray:
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[: len(colours)] = colours
    palette[VOID] = (255, 255, 255)
    return palette


def _split_names(path: Path) -> list:
    """Names listed one a line; a line of paths (SegNet's, DeepLab's train_aug.txt) gives its first file's stem."""
    if not path.is_file():
        raise DataError(f"split list not found: {path}")
    return [Path(line.split()[0]).stem for line in path.read_text().splitlines() if line.strip()]


def _image_file(folder: Path, name: str) -> Path:
    for suffix in IMAGE_SUFFIXES:
        if (folder / f"{name}{suffix}").is_file():
            return folder / f"{name}{suffix}"
    return folder / f"{name}.jpg"  # reported as missing


def _camvid_samples(root: Path, split: str) -> list:
    images, labels = root / split, root / f"{split}annot"
    if (root / f"{split}.txt").is_file():
        names = _split_names(root / f"{split}.txt")
    elif images.is_dir():
        names = sorted((p.stem for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=natural_key)
    else:
        raise DataError(f"{root}: no CamVid split '{split}' (neither {split}.txt nor {split}/)")
    return [Sample(name, _image_file(images, name), labels / f"{name}.png") for name in names]


def _voc_samples(root: Path, split: str) -> list:
    if (root / "VOC2012").is_dir() and not (root / "JPEGImages").is_dir():
        root = root / "VOC2012"
    lists = [root / "ImageSets" / folder / f"{split}.txt" for folder in ("Segmentation", "SegmentationAug")]
    listed = next((path for path in lists if path.is_file()), None)
    if listed is None:
        hint = " (SBD's list; without SBD use --set data.train_split=train)" if "aug" in split else ""
        raise DataError(f"{root}: no VOC split list {lists[0]}{hint}")
    labels = root / ("SegmentationClassAug" if "aug" in split else "SegmentationClass")
    return [Sample(name, root / "JPEGImages" / f"{name}.jpg", labels / f"{name}.png") for name in _split_names(listed)]


def _folder_classes(root: Path, classes_file) -> list:
    path = Path(classes_file) if classes_file else root / "classes.txt"
    if not path.is_file():
        raise DataError(f"class-names file not found: {path} (one class name a line)")
    classes = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not 1 <= len(classes) <= VOID:
        raise DataError(f"{path}: expected 1 to {VOID} class names, got {len(classes)}")
    return classes


def _folder_samples(root: Path, split: str) -> list:
    images = root / "images"
    if not images.is_dir():
        raise DataError(f"{root}: no images/ folder (folders layout: images/, labels/, classes.txt)")
    if split == "all":
        names = sorted((p.stem for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=natural_key)
    else:
        names = _split_names(root / f"{split}.txt")
    return [Sample(name, _image_file(images, name), root / "labels" / f"{name}.png") for name in names]


class CropDataset(Dataset):
    """Training crops: shorter edge to short_edge x U(scale_range), pad to the crop, random crop, flip.

    Item k is image perm_e[k mod N] of epoch e = k // N, perm_e a permutation drawn from (seed, e),
    augmented by a generator drawn from (seed, k): each image once per epoch, and exact resumption.
    """

    def __init__(self, semantic_set: SemanticSet, cfg: SemanticDataConfig, seed: int = 0):
        self.set, self.cfg, self.seed = semantic_set, cfg, seed

    def __len__(self) -> int:
        return len(self.set)

    def __getitem__(self, k: int) -> dict:
        k, n = int(k), len(self.set)
        index = int(np.random.default_rng([self.seed, k // n]).permutation(n)[k % n])
        image, label = self.set.read(index)
        image, label = self.augment(image, label, np.random.default_rng([self.seed, k, 1]))
        return {"image": torch.from_numpy(image).permute(2, 0, 1).float() / 255,  # (3, Hc, Wc) in 0..1
                "label": torch.from_numpy(label).long()}  # (Hc, Wc), VOID where padded

    def augment(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> tuple:
        cfg = self.cfg
        crop_height, crop_width = cfg.crop_size
        height, width = label.shape
        scale = cfg.short_edge * rng.uniform(*cfg.scale_range) / min(height, width)
        size = max(1, round(width * scale)), max(1, round(height * scale))
        image = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
        label = np.asarray(Image.fromarray(label).resize(size, Image.Resampling.NEAREST))
        pad_height, pad_width = max(crop_height - size[1], 0), max(crop_width - size[0], 0)
        if pad_height or pad_width:
            image = np.pad(image, ((0, pad_height), (0, pad_width), (0, 0)))
            label = np.pad(label, ((0, pad_height), (0, pad_width)), constant_values=VOID)
        top = int(rng.integers(label.shape[0] - crop_height + 1))
        left = int(rng.integers(label.shape[1] - crop_width + 1))
        image = image[top:top + crop_height, left:left + crop_width]
        label = label[top:top + crop_height, left:left + crop_width]
        if cfg.hflip and rng.random() < 0.5:
            image, label = image[:, ::-1], label[:, ::-1]
        return image.copy(), label.copy()  # contiguous and writable


def train_split(cfg: FinetuneConfig) -> str:
    return cfg.data.train_split or DEFAULT_SPLITS.get(cfg.data.dataset, ("train", "val"))[0]


def eval_split(cfg: FinetuneConfig) -> str:
    return cfg.data.eval_split or DEFAULT_SPLITS.get(cfg.data.dataset, ("train", "val"))[1]
