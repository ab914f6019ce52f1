"""Unlabeled frame pairs for training, with the paper's augmentation (docs/method.md#training).

Item k of a ``PairDataset`` is a pure function of (seed, k), so a training run
resumes exactly by index.
"""
from __future__ import annotations

import logging

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torch.utils.data import Dataset

from ..config import DataConfig
from .sources import build_videos
from .video import DataError, FrameError

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 20  # pairs tried per item before unreadable frames become an error


def build_pair_dataset(cfg: DataConfig, seed: int, with_flow: bool = False) -> PairDataset:
    """Pairs of ``cfg``'s videos; ``with_flow``: each item also carries the pair's classical flow (cached)."""
    videos = build_videos(cfg)
    flows = None
    if with_flow:
        from .classical_flow import cache_short_edge, load_or_compute

        flows = load_or_compute(videos, cfg.gap, cache_short_edge(cfg), cfg.flow_cache)
    return PairDataset(videos, cfg, seed, flows)


class PairDataset(Dataset):
    """Frame pairs (i, i +- gap) with the paper's augmentation; item k depends only on (seed, k).

    Indices beyond ``len`` are valid: ``len`` is the number of distinct pairs, for information.
    """

    def __init__(self, videos: list, cfg: DataConfig, seed: int = 0, flows=None):
        self.videos = videos
        self.cfg = cfg
        self.seed = seed
        self.flows = flows  # a classical_flow.FlowCache, or None
        # pair_ends[v] = number of pairs in videos 0..v
        self.pair_ends = np.cumsum([len(video) - cfg.gap for video in videos])

    def __len__(self) -> int:
        return int(self.pair_ends[-1])

    def __getitem__(self, k: int) -> dict:
        k = int(k)
        for attempt in range(MAX_ATTEMPTS):
            rng = np.random.default_rng([self.seed, k] if attempt == 0 else [self.seed, k, attempt])
            video, i, j = self._sample_pair(rng)
            try:
                frames = [video.read(i), video.read(j)]
            except FrameError as err:
                logger.warning("unreadable frame, trying another pair: %s", err)
                continue
            if self.flows is None:
                return {"frames": self._augment(frames, rng), "bad_frames": attempt}  # pairs skipped
            flows = [self.flows.flow(video.name, i, j), self.flows.flow(video.name, j, i)]
            pair, flow = self._augment(frames, rng, flows)
            return {"frames": pair, "flows": flow, "bad_frames": attempt}
        raise DataError(f"item {k}: {MAX_ATTEMPTS} pairs in a row had unreadable frames")

    def _sample_pair(self, rng: np.random.Generator):
        """A video weighted by its number of pairs, then (i, i + gap) or (i + gap, i)."""
        pair = int(rng.integers(len(self)))
        index = int(np.searchsorted(self.pair_ends, pair, side="right"))
        i = pair - (int(self.pair_ends[index - 1]) if index else 0)
        j = i + self.cfg.gap
        return (self.videos[index], j, i) if rng.random() < 0.5 else (self.videos[index], i, j)

    def _augment(self, frames: list, rng: np.random.Generator, flows=None):
        """Resize, crop and flip both frames the same way (docs/method.md#training): (2, 3, Hc, Wc) in 0..1.

        The crop is taken in the resized frame's coordinates, but PIL resizes only the
        cropped box (same result, a fraction of the work). ``flows``: the pair's two
        (h, w, 2) flows, on each frame's grid; they get the same rotation, crop and
        flip, and (pair, flows of shape (2, 2, Hc, Wc) in crop pixels) is returned.
        """
        cfg = self.cfg
        images = [Image.fromarray(frame) for frame in frames]
        if cfg.portrait_to_landscape and images[0].height > images[0].width:
            images = [im.transpose(Image.Transpose.ROTATE_90) for im in images]
            if flows is not None:
                flows = [_rotate_flow(flow) for flow in flows]
        width, height = images[0].size
        crop_height, crop_width = cfg.crop_size
        # The shorter edge goes to short_edge * U(scale_range), or more where the crop would not fit.
        scale = max(
            cfg.short_edge * rng.uniform(*cfg.scale_range) / min(height, width),
            crop_height / height,
            crop_width / width,
        )
        resized = max(crop_height, round(height * scale)), max(crop_width, round(width * scale))
        top = int(rng.integers(resized[0] - crop_height + 1))
        left = int(rng.integers(resized[1] - crop_width + 1))
        crops = []
        for im in images:  # each relative to its own size, so a stray frame of another size still fits
            sy, sx = im.height / resized[0], im.width / resized[1]
            box = (left * sx, top * sy, (left + crop_width) * sx, (top + crop_height) * sy)
            crops.append(np.asarray(im.resize((crop_width, crop_height), Image.Resampling.BILINEAR, box=box)))
        pair = np.stack(crops)  # (2, Hc, Wc, 3) uint8
        flip = cfg.hflip and rng.random() < 0.5
        if flip:
            pair = pair[:, :, ::-1]
        pair = torch.from_numpy(pair.copy()).permute(0, 3, 1, 2).float() / 255  # (2, 3, Hc, Wc)
        if cfg.color_jitter:
            pair = jitter_colors(pair, rng.uniform(1 - cfg.color_jitter, 1 + cfg.color_jitter, size=3))
        if flows is None:
            return pair
        crops = np.stack([_crop_flow(flow, resized, top, left, crop_height, crop_width) for flow in flows])
        if flip:
            crops = crops[:, :, ::-1] * np.array([-1, 1], dtype=np.float32)
        return pair, torch.from_numpy(crops.copy()).permute(0, 3, 1, 2)  # (2, 2, Hc, Wc)


def jitter_colors(frames: torch.Tensor, factors) -> torch.Tensor:
    """Brightness, contrast and saturation of (N, 3, H, W) frames in 0..1 scaled by ``factors``, all frames alike."""
    brightness, contrast, saturation = (float(f) for f in factors)
    frames = TF.adjust_brightness(frames, brightness)
    frames = TF.adjust_contrast(frames, contrast)
    return TF.adjust_saturation(frames, saturation)


def _rotate_flow(flow: np.ndarray) -> np.ndarray:
    """A (h, w, 2) flow of a portrait frame, turned as PIL's ROTATE_90 turns the frame (anticlockwise)."""
    rotated = np.rot90(flow)  # pixel (x, y) goes to (y, w - 1 - x)
    return np.stack([rotated[..., 1], -rotated[..., 0]], axis=-1)


def _crop_flow(flow: np.ndarray, resized: tuple, top: int, left: int, height: int, width: int) -> np.ndarray:
    """The crop of a (h, w, 2) flow matching a frame resized to ``resized`` and cropped at (top, left),
    its values in pixels of the crop: (height, width, 2) float32."""
    h, w = flow.shape[:2]
    sy, sx = h / resized[0], w / resized[1]
    box = (left * sx, top * sy, (left + width) * sx, (top + height) * sy)
    channels = [
        np.asarray(Image.fromarray(np.ascontiguousarray(flow[..., k], dtype=np.float32), mode="F")
                   .resize((width, height), Image.Resampling.BILINEAR, box=box))
        for k in range(2)
    ]
    return np.stack([channels[0] / sx, channels[1] / sy], axis=-1)
