"""Unlabeled still images beside the video, and per-image maps cached for them (not the paper's).

``data.images`` names a folder of photographs (searched recursively; DUTS-TR's
images, say) for the parts of training that need one image: f_A learns, on
each, a target map cached here, computed once per image by teachers with no
labels (training/image_targets.py: a video-trained model's objectness, and
data/saliency_prior.py: a classical prior). A file that cannot be read is
skipped and counted, when the list is made and whenever it is read.

``MapCache`` keeps one soft map per image, at a small shorter edge, as uint8
in one memory-mapped array, so data-loader workers share it without copies.
``ImageDataset`` gives item k as a pure function of (seed, k): an image cropped,
flipped and colour-jittered, and the same crop of its target map.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from itertools import repeat
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from tqdm import tqdm

from ..config import DataConfig
from ..files import atomic_write, write_text
from .pairs import jitter_colors
from .video import DataError, FrameError, natural_key, read_image

logger = logging.getLogger(__name__)

STILL_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
MAP_SHORT_EDGE = 96  # cached maps are kept at this shorter edge: a 176-pixel crop's masks are 22 x 22
MAX_ATTEMPTS = 20


def default_cache_dir() -> Path:
    """$OBJECTNESS_CACHE/maps, or ~/.cache/objectness/maps."""
    base = os.environ.get("OBJECTNESS_CACHE") or Path.home() / ".cache" / "objectness"
    return Path(base) / "maps"


class StillImages:
    """The image files under a folder (recursively, hidden ones left out), in natural order."""

    def __init__(self, folder):
        self.folder = Path(folder).expanduser()
        if not self.folder.is_dir():
            raise DataError(f"data.images: folder of still images not found: {self.folder}")
        self.paths = sorted((p for p in self.folder.rglob("*")
                             if p.suffix.lower() in STILL_IMAGE_SUFFIXES and p.is_file()
                             and not any(part.startswith(".") for part in p.relative_to(self.folder).parts)),
                            key=lambda p: [natural_key(part) for part in p.relative_to(self.folder).parts])
        if not self.paths:
            raise DataError(f"data.images: no images ({', '.join(STILL_IMAGE_SUFFIXES)}) in {self.folder}")

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, i: int) -> np.ndarray:
        """Image ``i`` as uint8 RGB (H, W, 3); FrameError if it cannot be decoded."""
        try:
            return read_image(self.paths[i])
        except DataError as err:
            raise FrameError(str(err)) from None

    def names(self) -> list:
        return [str(p.relative_to(self.folder)) for p in self.paths]

    def digest(self) -> str:
        """What cached maps of these images depend on: their names and sizes in bytes."""
        listing = [[name, p.stat().st_size] for name, p in zip(self.names(), self.paths)]
        return hashlib.sha256(json.dumps(listing).encode()).hexdigest()[:16]


class MapCache:
    """One uint8 soft map per image, flat in one array; ``get(i)`` is (h, w) float32 in 0..1, or None
    for an image that could not be read when the cache was made."""

    def __init__(self, flat: np.ndarray, index: list):
        self.flat = flat  # (total,) uint8
        self.index = index  # per image [offset, h, w], offset -1 where unreadable

    def get(self, i: int) -> Optional[np.ndarray]:
        offset, h, w = self.index[i]
        if offset < 0:
            return None
        return np.asarray(self.flat[offset:offset + h * w], dtype=np.float32).reshape(h, w) / 255

    @property
    def unreadable(self) -> int:
        return sum(1 for offset, _, _ in self.index if offset < 0)


def load_or_compute_maps(images: StillImages, key: str, compute: Callable, description: str,
                         cache_dir=None, workers: int = 1) -> MapCache:
    """The maps of ``images`` under ``key`` (a digest of how they are made), from the cache if there, else
    ``compute(image uint8 (H, W, 3)) -> (H, W) float in 0..1`` on each image (a progress bar) and saved.
    With ``workers`` > 1, that many processes compute them (``compute`` must then be picklable: a
    module-level function or a functools.partial of one); the maps are the same as with one.
    Unreadable images are skipped with a warning and counted."""
    folder = Path(cache_dir) if cache_dir else default_cache_dir()
    array_path, index_path = folder / f"{key}.npy", folder / f"{key}.json"
    if array_path.is_file() and index_path.is_file():
        logger.info("%s from the cache %s", description, array_path)
        index = json.loads(index_path.read_text())["index"]
        if len(index) != len(images):
            raise DataError(f"{index_path} holds {len(index)} maps for {len(images)} images; delete it")
        return MapCache(np.load(array_path, mmap_mode="r"), index)
    chunks, index, offset = [], [], 0
    for stored, shape, error in tqdm(_compute_all(images, compute, workers), total=len(images),
                                     desc=description, unit="image"):
        if error is not None:
            logger.warning("unreadable image skipped: %s", error)
            index.append([-1, 0, 0])
            continue
        chunks.append(stored)
        index.append([offset, *shape])
        offset += stored.size
    if not chunks:
        raise DataError(f"data.images: none of the {len(images)} images in {images.folder} could be read")
    flat = np.concatenate(chunks)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(array_path, lambda temporary: _save_array(temporary, flat))
    write_text(index_path, json.dumps({"index": index, "images": str(images.folder)}))  # last: marks it complete
    cache = MapCache(np.load(array_path, mmap_mode="r"), index)
    if cache.unreadable:
        logger.warning("%d of %d images could not be read and are left out", cache.unreadable, len(images))
    return cache


def _compute_all(images: StillImages, compute: Callable, workers: int):
    """``_map_of`` each image in order: in this process, or in ``workers`` processes, started as the
    DataLoader's workers are (the platform's default), so that scripts without a main guard work on Linux."""
    if workers <= 1 or len(images) < 2:
        yield from (_map_of(images, i, compute) for i in range(len(images)))
        return
    workers = min(workers, len(images))
    chunk = max(1, min(32, len(images) // (4 * workers)))
    with ProcessPoolExecutor(workers) as pool:
        yield from pool.map(_map_of, repeat(images), range(len(images)), repeat(compute), chunksize=chunk)


def _map_of(images: StillImages, i: int, compute: Callable) -> tuple:
    """(the map of image ``i`` as flat uint8 at MAP_SHORT_EDGE, its (h, w), None), or (None, None, the
    reason) where the image cannot be read."""
    try:
        image = images.read(i)
    except FrameError as err:
        return None, None, str(err)
    soft = shrink_map(np.asarray(compute(image), dtype=np.float32), MAP_SHORT_EDGE)
    return (np.clip(soft, 0, 1) * 255 + 0.5).astype(np.uint8).ravel(), soft.shape, None


def available_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _save_array(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, array)


def shrink_map(soft: np.ndarray, short_edge: int) -> np.ndarray:
    """A (H, W) map area-averaged to a shorter edge of ``short_edge`` (unchanged if already smaller)."""
    h, w = soft.shape
    scale = short_edge / min(h, w)
    if scale >= 1:
        return soft
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(soft, mode="F").resize(size, Image.Resampling.BOX))


class ImageDataset(Dataset):
    """Still images and their target maps, augmented alike; item k depends only on (seed, k).

    targets: [(MapCache, weight)]: the target is the weighted mean of the caches' maps. Each image
    is resized to a shorter edge of ``data.short_edge`` x U(``data.scale_range``), cropped to
    ``data.crop_size`` at random and flipped half the time; its colours are jittered by
    ``data.image_color_jitter`` (the image only: the target stays the teachers' map of the
    unjittered image). Item: {"images": (3, Hc, Wc) in 0..1, "targets": (Hc, Wc) in 0..1,
    "bad_images": unreadable images skipped}.
    """

    def __init__(self, images: StillImages, targets: list, cfg: DataConfig, seed: int = 0):
        if not targets:
            raise ValueError("ImageDataset needs at least one target map cache")
        self.images, self.targets, self.cfg, self.seed = images, targets, cfg, seed
        usable = [i for i in range(len(images)) if all(cache.index[i][0] >= 0 for cache, _ in targets)]
        if not usable:
            raise DataError(f"data.images: no image of {images.folder} has a target map")
        self.usable = np.array(usable)

    def __len__(self) -> int:
        return len(self.usable)

    def __getitem__(self, k: int) -> dict:
        k = int(k)
        for attempt in range(MAX_ATTEMPTS):
            rng = np.random.default_rng([self.seed, k, 1] if attempt == 0 else [self.seed, k, 1, attempt])
            i = int(self.usable[rng.integers(len(self.usable))])
            try:
                image = self.images.read(i)
            except FrameError as err:
                logger.warning("unreadable image, trying another: %s", err)
                continue
            total = sum(weight for _, weight in self.targets)
            target = sum(weight * cache.get(i) for cache, weight in self.targets) / total
            crop, target = self._augment(image, target, rng)
            return {"images": crop, "targets": target, "bad_images": attempt}
        raise DataError(f"item {k}: {MAX_ATTEMPTS} images in a row could not be read")

    def _augment(self, image: np.ndarray, target: np.ndarray, rng: np.random.Generator) -> tuple:
        cfg = self.cfg
        height, width = image.shape[:2]
        crop_height, crop_width = cfg.crop_size
        scale = max(cfg.short_edge * rng.uniform(*cfg.scale_range) / min(height, width),
                    crop_height / height, crop_width / width)
        resized = max(crop_height, round(height * scale)), max(crop_width, round(width * scale))
        top = int(rng.integers(resized[0] - crop_height + 1))
        left = int(rng.integers(resized[1] - crop_width + 1))

        def crop(picture: Image.Image) -> np.ndarray:  # the same box in each picture's own pixels
            sy, sx = picture.height / resized[0], picture.width / resized[1]
            box = (left * sx, top * sy, (left + crop_width) * sx, (top + crop_height) * sy)
            return np.asarray(picture.resize((crop_width, crop_height), Image.Resampling.BILINEAR, box=box))

        pixels, soft = crop(Image.fromarray(image)), crop(Image.fromarray(target.astype(np.float32), mode="F"))
        if cfg.hflip and rng.random() < 0.5:
            pixels, soft = pixels[:, ::-1], soft[:, ::-1]
        tensor = torch.from_numpy(pixels.copy()).permute(2, 0, 1).float() / 255  # (3, Hc, Wc)
        if cfg.image_color_jitter:
            j = cfg.image_color_jitter
            tensor = jitter_colors(tensor[None], rng.uniform(1 - j, 1 + j, size=3))[0]
        return tensor, torch.from_numpy(np.clip(soft, 0, 1).copy())
