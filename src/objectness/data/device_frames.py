"""Training pairs made on the training device (``data.on_device``), so a GPU step never waits for a loader.

Every frame is decoded once into one uint8 tensor in the device's memory
(2,079 DAVIS frames at 240p: 0.6 GB). Each step then draws its pairs, and
resizes, crops and flips them as docs/method.md#training says, with one ``grid_sample`` on
the device; no worker processes, no host-to-device copy per step. The
augmentation is PairDataset's (data/pairs.py), made of tensor operations; the
random draws of step s come from a generator seeded with (seed, s, rank), so
a resumed run reads what the uninterrupted one read.

It suits training video of one frame size that fits in the device's memory
as uint8 (DAVIS at one resolution; not YouTube-VOS). Frames come from any
``data.source`` that data/sources.py reads, or from a frame pack:
one ``.npz`` of encoded frames (``pack_frames``), small enough to carry to a
lent GPU with the repository.

    frames = DeviceFrames.load(cfg.data, torch.device("cuda"))
    for batch in DevicePairLoader(frames, cfg, start_step=0):
        batch["frames"]  # (B, 2, 3, Hc, Wc) float in 0..1, on the device
"""
from __future__ import annotations

import io
import logging
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..config import Config, DataConfig
from ..files import atomic_write
from .sources import build_videos
from .video import DataError, Video

log = logging.getLogger(__name__)

PACK_SUFFIX = ".npz"


# ---------------------------------------------------------------- frame packs


def pack_frames(cfg: DataConfig, path, image_format: str = "WEBP", quality: int = 75) -> dict:
    """Re-encode every frame of ``cfg.source`` (a DAVIS root with its split, folders, videos)
    into one ``.npz``: the encoded bytes end to end, their offsets, each video's name and
    length. Returns {"videos", "frames", "bytes"}."""
    videos = build_videos(replace(cfg, gap=0))
    encoded, names, lengths = [], [], []
    for video in videos:
        names.append(video.name)
        lengths.append(len(video))
        for i in range(len(video)):
            buffer = io.BytesIO()
            Image.fromarray(video.read(i)).save(buffer, format=image_format, quality=quality)
            encoded.append(np.frombuffer(buffer.getvalue(), dtype=np.uint8))
    offsets = np.cumsum([0] + [len(e) for e in encoded])
    arrays = {"encoded": np.concatenate(encoded), "offsets": offsets, "names": np.array(names),
              "lengths": np.array(lengths), "format": np.array(image_format)}

    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(Path(path), write)
    return {"videos": len(names), "frames": len(encoded), "bytes": Path(path).stat().st_size}


def read_pack(path) -> list:
    """The videos of a frame pack, each frame as its encoded bytes (decoded by Video.read)."""
    try:
        with np.load(path, allow_pickle=False) as pack:
            encoded, offsets = pack["encoded"], pack["offsets"]
            names, lengths = pack["names"].tolist(), pack["lengths"].tolist()
    except (OSError, ValueError, KeyError) as err:
        raise DataError(f"{path}: not a frame pack ({err})") from None
    videos, first = [], 0
    for name, length in zip(names, lengths):
        frames = [encoded[offsets[k]:offsets[k + 1]].tobytes() for k in range(first, first + length)]
        videos.append(Video(name, frames))
        first += length
    return videos


def unpack_frames(path, folder, quality: int = 95) -> Path:
    """A frame pack as a folder of frame folders (FOLDER/<video>/00000.jpg), which every
    ``--data`` of the command line reads."""
    folder = Path(folder)
    jobs = []
    for video in read_pack(path):
        (folder / video.name).mkdir(parents=True, exist_ok=True)
        jobs += [(video, i, folder / video.name / f"{i:05d}.jpg") for i in range(len(video))]

    def write(job):
        video, i, target = job
        Image.fromarray(video.read(i)).save(target, format="JPEG", quality=quality)

    with ThreadPoolExecutor() as pool:
        list(pool.map(write, jobs))
    return folder


def is_pack(source: str) -> bool:
    return str(source).endswith(PACK_SUFFIX)


# ---------------------------------------------------------------- frames on the device


class DeviceFrames:
    """All frames as one (N, 3, H, W) uint8 tensor, and the pairs (i, i + gap) within its videos."""

    def __init__(self, frames: torch.Tensor, lengths: list, gap: int):
        self.frames = frames  # (N, 3, H, W) uint8
        starts = np.cumsum([0] + list(lengths[:-1]))
        first = [np.arange(start, start + length - gap) for start, length in zip(starts, lengths) if length > gap]
        if not first:
            raise DataError(f"no video has the {gap + 1} frames that pairs at gap {gap} need")
        self.first = torch.from_numpy(np.concatenate(first)).to(frames.device)  # (P,) first frame of each pair
        self.gap = gap

    def __len__(self) -> int:
        return len(self.first)

    @classmethod
    def load(cls, cfg: DataConfig, device: torch.device) -> DeviceFrames:
        """Decode ``cfg.source`` (a frame pack or any source of data/sources.py) once, onto ``device``.

        Portrait frames are turned to landscape (data.portrait_to_landscape), and frames larger
        than any crop needs are downscaled once (antialiased), as data/sources.py does for video files.
        """
        videos = read_pack(cfg.source) if is_pack(cfg.source) else build_videos(cfg)
        jobs = [(video, i) for video in videos for i in range(len(video))]
        with ThreadPoolExecutor() as pool:  # PIL decodes without the GIL
            arrays = list(pool.map(lambda job: job[0].read(job[1]), jobs))
        if cfg.portrait_to_landscape:
            arrays = [np.rot90(a) if a.shape[0] > a.shape[1] else a for a in arrays]  # as PIL's ROTATE_90
        sizes = sorted({a.shape[:2] for a in arrays})
        if len(sizes) > 1:
            raise DataError(f"data.on_device keeps the frames in one tensor, so they must share one size; "
                            f"{cfg.source} has {len(sizes)} ({', '.join('x'.join(map(str, s)) for s in sizes[:4])}"
                            f"{', ...' if len(sizes) > 4 else ''}); use data.on_device=false")
        frames = torch.empty(len(arrays), 3, *sizes[0], dtype=torch.uint8, device=device)  # (N, 3, H, W)
        for k, array in enumerate(arrays):
            frames[k].copy_(torch.from_numpy(np.array(array)).permute(2, 0, 1))  # np.array: a writable copy
        frames = downscale(frames, largest_needed(cfg, sizes[0]))
        log.info("%d frames of %d videos on %s as uint8: %s, %.2f GB", len(frames), len(videos), device,
                 "x".join(map(str, frames.shape[-2:])), frames.numel() / 1e9)
        return cls(frames, [len(video) for video in videos], cfg.gap)


def largest_needed(cfg: DataConfig, size: tuple) -> tuple:
    """(H, W) of a frame of ``size`` scaled as far up as the augmentation can ask, if that is smaller."""
    height, width = size
    scale = max(cfg.short_edge * max(cfg.scale_range) / min(height, width),
                cfg.crop_size[0] / height, cfg.crop_size[1] / width)
    if scale >= 1:
        return size
    return max(cfg.crop_size[0], math.ceil(height * scale)), max(cfg.crop_size[1], math.ceil(width * scale))


def downscale(frames: torch.Tensor, size: tuple, chunk: int = 64) -> torch.Tensor:
    """(N, 3, H, W) uint8 frames resized to ``size`` with antialiasing, a chunk at a time."""
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames
    out = torch.empty(len(frames), 3, *size, dtype=torch.uint8, device=frames.device)
    for start in range(0, len(frames), chunk):
        part = frames[start:start + chunk].float()
        resized = F.interpolate(part, size=size, mode="bilinear", antialias=True, align_corners=False)
        out[start:start + chunk] = resized.round().clamp(0, 255).to(torch.uint8)
    return out


# ---------------------------------------------------------------- pairs, augmented on the device


def augment_grid(draws: torch.Tensor, cfg: DataConfig, size: tuple) -> torch.Tensor:
    """The sampling grid of each pair's resize and crop, for grid_sample (align_corners=False).

    draws: (B, 3) uniform in [0, 1): scale, top, left. As PairDataset._augment: the shorter
    edge goes to short_edge * U(scale_range) (or more, for the crop to fit), then a crop of
    crop_size at a random integer offset of the resized frame. Returns (B, Hc, Wc, 2).
    """
    height, width = size
    crop_height, crop_width = cfg.crop_size
    low, high = cfg.scale_range
    scale = cfg.short_edge * (low + (high - low) * draws[:, 0]) / min(height, width)
    scale = scale.clamp(min=max(crop_height / height, crop_width / width))
    resized_h = (height * scale).round().clamp(min=crop_height)
    resized_w = (width * scale).round().clamp(min=crop_width)
    top = (draws[:, 1] * (resized_h - crop_height + 1)).floor()
    left = (draws[:, 2] * (resized_w - crop_width + 1)).floor()
    # Output pixel centre y + 0.5 of the crop lies at (top + y + 0.5) / resized_h of the frame's height.
    ys = torch.arange(crop_height, device=draws.device) + 0.5  # (Hc,)
    xs = torch.arange(crop_width, device=draws.device) + 0.5  # (Wc,)
    gy = (top[:, None] + ys) / resized_h[:, None] * 2 - 1  # (B, Hc)
    gx = (left[:, None] + xs) / resized_w[:, None] * 2 - 1  # (B, Wc)
    return torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)  # (B, Hc, Wc, 2)


def pair_batch(frames: DeviceFrames, cfg: DataConfig, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """``batch_size`` augmented pairs (B, 2, 3, Hc, Wc) in 0..1, drawn with ``generator``."""
    device = frames.frames.device
    draws = torch.rand(batch_size, 6, generator=generator, device=device)  # pair, order, scale, top, left, flip
    first = frames.first[(draws[:, 0] * len(frames)).long().clamp(max=len(frames) - 1)]  # (B,)
    swap = draws[:, 1] < 0.5  # (i + gap, i) instead of (i, i + gap)
    indices = torch.stack([first + frames.gap * swap, first + frames.gap * ~swap], dim=1)  # (B, 2)
    height, width = frames.frames.shape[-2:]
    pairs = frames.frames[indices].float().flatten(1, 2)  # (B, 6, H, W), 0..255
    grid = augment_grid(draws[:, 2:5], cfg, (height, width))
    crops = F.grid_sample(pairs, grid, mode="bilinear", padding_mode="border", align_corners=False)
    crops = (crops / 255).clamp_(0, 1)  # (B, 6, Hc, Wc)
    if cfg.hflip:
        flip = (draws[:, 5] < 0.5)[:, None, None, None]
        crops = torch.where(flip, crops.flip(-1), crops)
    return crops.unflatten(1, (2, 3))  # (B, 2, 3, Hc, Wc)


class DevicePairLoader:
    """Batches of pairs made on the device for steps start_step..train.steps-1, as train.pair_loader's."""

    def __init__(self, frames: DeviceFrames, cfg: Config, start_step: int, rank: int = 0):
        self.frames, self.cfg, self.start_step, self.rank = frames, cfg, start_step, rank
        self.generator = torch.Generator(device=frames.frames.device)

    def __len__(self) -> int:
        return max(self.cfg.train.steps - self.start_step, 0)

    def __iter__(self):
        no_bad_frames = torch.zeros(self.cfg.train.batch_size, device=self.frames.frames.device)
        for step in range(self.start_step, self.cfg.train.steps):
            self.generator.manual_seed(step_seed(self.cfg.train.seed, step, self.rank))
            yield {"frames": pair_batch(self.frames, self.cfg.data, self.cfg.train.batch_size, self.generator),
                   "bad_frames": no_bad_frames}


def step_seed(seed: int, step: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1, dtype=np.uint64)[0] >> 1)
