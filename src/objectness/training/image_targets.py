"""Target maps for the still images of ``data.images`` (not the paper's; data/images.py).

Two teachers, neither trained with labels, each computed once per image and
cached: the objectness map of the models in ``loss.distill_from`` (learned from
video; read as ``segment`` reads them: their test scales and guided filter),
and the classical background-connectivity prior (data/saliency_prior.py). The
target an image teaches is their weighted mean, ``loss.image_prior_weight`` of it
the prior's: motion tells what moves as a whole, the prior what stands out from
the image's border; where they agree, the target is confident.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ..config import Config, ConfigError
from ..data.images import ImageDataset, StillImages, available_cores, load_or_compute_maps
from ..data.saliency_prior import prior_maps
from ..inference.segmenter import load_segmenter, segment_images
from ..model.checkpoint import LAST, WEIGHTS


def build_image_dataset(cfg: Config, device, seed: int) -> ImageDataset:
    """The still images of ``cfg.data.images`` with their cached target maps."""
    if cfg.data.images is None:
        raise ConfigError("loss.image_weight teaches still images: name their folder (--images or data.images)")
    images = StillImages(cfg.data.images)
    weight = cfg.loss.image_prior_weight
    targets = []
    if weight < 1:
        if not cfg.loss.distill_from:
            raise ConfigError("loss.image_weight with loss.image_prior_weight < 1 needs teachers in "
                              "loss.distill_from (or loss.image_prior_weight=1: the prior alone)")
        targets.append((teacher_maps(cfg.loss.distill_from, images, device, cfg.data.map_cache), 1 - weight))
    if weight > 0:
        # By default the machine's cores, shared among torchrun's processes on it (each computes the maps).
        local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        workers = cfg.data.prior_workers or max(1, available_cores() // local_processes)
        targets.append((prior_maps(images, cfg.loss.image_prior, cfg.data.map_cache, workers), weight))
    return ImageDataset(images, targets, cfg.data, seed)


def teacher_maps(checkpoints, images: StillImages, device, cache_dir=None):
    """The mean objectness map of the models ``checkpoints`` on every image, cached (data/images.py)."""
    segmenters = [load_segmenter(path, device=device) for path in checkpoints]
    description = {"version": 1, "images": images.digest(),
                   "teachers": [[_file_digest(path), s.channel, list(s.scales), s.guided_radius, s.guided_eps]
                                for path, s in zip(checkpoints, segmenters)]}
    key = "teachers-" + hashlib.sha256(json.dumps(description).encode()).hexdigest()[:16]

    def objectness(image: np.ndarray) -> np.ndarray:
        return np.mean([segment_images(segmenter, [image])[0] for segmenter in segmenters], axis=0)

    return load_or_compute_maps(images, key, objectness, "teachers' maps of data.images", cache_dir)


def _file_digest(checkpoint) -> str:
    """The sha256 of a checkpoint's weights file (a run folder's model.safetensors, else its last.pt)."""
    path = Path(checkpoint)
    if path.is_dir():
        path = path / WEIGHTS if (path / WEIGHTS).is_file() else path / LAST
    return hashlib.sha256(path.read_bytes()).hexdigest()
