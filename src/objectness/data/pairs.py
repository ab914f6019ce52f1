"""Unlabeled frame pairs for training (SPEC 1.5).

Videos come from one of four sources, detected from ``DataConfig.source``:
``"synthetic"`` (generated in memory), a DAVIS root (JPEGImages/<res>/<seq>),
a folder of frame folders (ROOT/<video>/*.jpg), or a video file / a folder of
video files (decoded once with PyAV and kept in memory as JPEG bytes).

Item k of a ``PairDataset`` is a pure function of (seed, k), so a training run
resumes exactly by index.
"""

from __future__ import annotations

import io
import logging
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torch.utils.data import Dataset
from tqdm import tqdm

from ..config import DataConfig
from . import synthetic

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".webm", ".mkv")
MAX_ATTEMPTS = 20  # pairs tried per item before unreadable frames become an error


class DataError(ValueError):
    """Training data that cannot be found or read."""


class FrameError(Exception):
    """One frame that cannot be decoded."""


@dataclass
class Video:
    """A named sequence of frames: image paths, encoded image bytes or uint8 arrays."""

    name: str
    frames: Sequence

    def __len__(self) -> int:
        return len(self.frames)

    def read(self, i: int) -> np.ndarray:
        """Frame ``i`` as uint8 RGB (H, W, 3); raises FrameError if it cannot be decoded."""
        frame = self.frames[i]
        if isinstance(frame, np.ndarray):
            return frame
        source = io.BytesIO(frame) if isinstance(frame, bytes) else frame
        try:
            with Image.open(source) as image:
                return np.asarray(image.convert("RGB"))  # convert() loads: truncated files raise here
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            raise FrameError(f"{self.frame_name(i)}: {err}") from None

    def frame_name(self, i: int) -> str:
        frame = self.frames[i]
        return str(frame) if isinstance(frame, (str, Path)) else f"{self.name} frame {i}"


def build_videos(cfg: DataConfig) -> list:
    """The videos of ``cfg.source`` with at least ``cfg.gap + 1`` frames."""
    if cfg.source == "synthetic":
        return _synthetic_videos(cfg)
    path = Path(cfg.source).expanduser()
    if not path.exists():
        raise DataError(f"data source not found: {path}")
    if path.is_file():
        if path.suffix.lower() not in VIDEO_SUFFIXES:
            raise DataError(f"{path}: not a video file ({', '.join(VIDEO_SUFFIXES)})")
        return _long_enough([_decode_video(path, cfg)], cfg.gap, single=True)
    if (path / "JPEGImages").is_dir():
        return _long_enough(_davis_videos(path, cfg), cfg.gap)
    video_files = sorted((p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES), key=natural_key)
    if video_files:
        return _long_enough(_decode_videos(video_files, cfg), cfg.gap)
    frames = list_frames(path)
    if frames:  # the folder itself is one video
        return _long_enough([Video(path.name, frames)], cfg.gap, single=True)
    return _long_enough(_frame_folder_videos(path), cfg.gap)


def build_pair_dataset(cfg: DataConfig, seed: int, with_flow: bool = False) -> PairDataset:
    """Pairs of ``cfg``'s videos; ``with_flow``: each item also carries the pair's classical flow (cached)."""
    videos = build_videos(cfg)
    flows = None
    if with_flow:
        from .classical_flow import cache_short_edge, load_or_compute

        flows = load_or_compute(videos, cfg.gap, cache_short_edge(cfg), cfg.flow_cache)
    return PairDataset(videos, cfg, seed, flows)


def natural_key(path) -> list:
    """Sort key where frame2 < frame10."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", Path(path).name)]


def list_frames(folder: Path) -> list:
    """Image files directly in ``folder``, in natural order, hidden ones left out (no decoding)."""
    with os.scandir(folder) as entries:
        paths = [Path(e.path) for e in entries if _is_frame(e)]
    return sorted(paths, key=natural_key)


def _is_frame(entry: os.DirEntry) -> bool:
    return (
        not entry.name.startswith(".")
        and entry.is_file()
        and Path(entry.name).suffix.lower() in IMAGE_SUFFIXES
    )


def _long_enough(videos: list, gap: int, single: bool = False) -> list:
    kept = []
    for video in videos:
        if len(video) > gap:
            kept.append(video)
        elif single:
            raise DataError(
                f"video '{video.name}' has {len(video)} frame(s); pairs at gap {gap} need {gap + 1}"
            )
        else:
            logger.warning(
                "skipping video '%s': %d frame(s), too few for gap %d", video.name, len(video), gap
            )
    if not kept:
        raise DataError(f"no video has the {gap + 1} frames that pairs at gap {gap} need")
    return kept


def _synthetic_videos(cfg: DataConfig) -> list:
    videos = []
    for index in tqdm(range(cfg.synthetic.num_videos), desc="synthetic videos", unit="video"):
        video = synthetic.make_video(cfg.synthetic, index)
        videos.append(Video(video.name, video.frames))
    return _long_enough(videos, cfg.gap)


def _frame_folder_videos(root: Path) -> list:
    folders = sorted(
        (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=natural_key
    )
    videos = [Video(folder.name, list_frames(folder)) for folder in folders]
    videos = [video for video in videos if len(video) > 0]
    if not videos:
        raise DataError(f"no videos found in {root} (expected video files or folders of frames)")
    return videos


def _davis_videos(root: Path, cfg: DataConfig) -> list:
    images = root / "JPEGImages"
    resolution = cfg.davis_resolution or _davis_resolution(images)
    if resolution is None:  # JPEGImages/<seq>/ with no resolution level (SegTrackv2)
        return _frame_folder_videos(images)
    folder = images / resolution
    if not folder.is_dir():
        raise DataError(f"DAVIS resolution folder not found: {folder}")
    if cfg.davis_split is None:
        names = [p.name for p in sorted(folder.iterdir(), key=natural_key) if p.is_dir()]
    else:
        names = _davis_split(root / "ImageSets" / resolution / f"{cfg.davis_split}.txt")
    videos = []
    for name in names:
        if not (folder / name).is_dir():
            raise DataError(f"sequence '{name}' of split '{cfg.davis_split}' not found in {folder}")
        videos.append(Video(name, list_frames(folder / name)))
    if not videos:
        raise DataError(f"no sequences found in {folder}")
    return videos


def _davis_resolution(images: Path):
    """The only resolution folder, or the largest (Full-Resolution > 1080p > 480p > 240p);
    None where JPEGImages holds sequences of frames directly."""
    folders = sorted(p for p in images.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataError(f"no resolution folders (480p, ...) in {images}")
    if list_frames(folders[0]):
        return None

    def size(name: str) -> float:
        match = re.fullmatch(r"(\d+)p", name)
        return float(match.group(1)) if match else math.inf if name == "Full-Resolution" else -1.0

    return max((folder.name for folder in folders), key=size)


def _davis_split(path: Path) -> list:
    """Sequence names of an ImageSets list: one per line, or DAVIS 2016's
    "/JPEGImages/480p/bear/00000.jpg /Annotations/480p/bear/00000.png" lines."""
    if not path.is_file():
        available = sorted(p.stem for p in path.parent.glob("*.txt")) if path.parent.is_dir() else []
        raise DataError(
            f"split list not found: {path} (available: {', '.join(available) or 'none'}; "
            "data.davis_split=null uses every sequence)"
        )
    names = []
    for line in path.read_text().split("\n"):
        if line.strip():
            first = line.split()[0]
            names.append(Path(first).parent.name if "/" in first else first)
    return list(dict.fromkeys(names))  # unique, in order


def _decode_videos(paths: list, cfg: DataConfig) -> list:
    """The videos of a folder; one that cannot be decoded is skipped with a warning."""
    videos = []
    for path in tqdm(paths, desc="decoding videos", unit="video"):
        try:
            videos.append(_decode_video(path, cfg))
        except DataError as err:
            logger.warning("skipping video: %s", err)
    return videos


def _decode_video(path: Path, cfg: DataConfig) -> Video:
    """Every frame of a video file, downscaled and JPEG-encoded in memory."""
    import av  # only video sources need PyAV

    max_short_edge = max(math.ceil(cfg.short_edge * max(cfg.scale_range)), *cfg.crop_size)
    frames = []
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                frames.append(_encode(frame.to_image(), max_short_edge))
    except (av.FFmpegError, OSError, IndexError) as err:
        raise DataError(f"cannot decode video {path}: {err}") from None
    return Video(path.stem, frames)


def _encode(image: Image.Image, max_short_edge: int) -> bytes:
    scale = max_short_edge / min(image.size)
    if scale < 1:
        size = round(image.width * scale), round(image.height * scale)
        image = image.resize(size, Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


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
        """Resize, crop and flip both frames the same way (SPEC 1.5): (2, 3, Hc, Wc) in 0..1.

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
            pair = _jitter_colors(pair, rng.uniform(1 - cfg.color_jitter, 1 + cfg.color_jitter, size=3))
        if flows is None:
            return pair
        crops = np.stack([_crop_flow(flow, resized, top, left, crop_height, crop_width) for flow in flows])
        if flip:
            crops = crops[:, :, ::-1] * np.array([-1, 1], dtype=np.float32)
        return pair, torch.from_numpy(crops.copy()).permute(0, 3, 1, 2)  # (2, 2, Hc, Wc)


def _jitter_colors(frames: torch.Tensor, factors) -> torch.Tensor:
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
