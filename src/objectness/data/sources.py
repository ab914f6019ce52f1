"""The unlabeled training videos of ``data.source`` (docs/method.md#training).

Four kinds of source, told apart by what is on disk: ``"synthetic"``
(generated in memory), a DAVIS root (JPEGImages/<res>/<seq>), a folder of frame
folders (ROOT/<video>/*.jpg), or a video file / a folder of video files (decoded
once with PyAV and kept in memory as JPEG bytes).
"""
from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Optional

from tqdm import tqdm

from ..config import DataConfig
from . import synthetic
from .video import (
    VIDEO_SUFFIXES,
    DataError,
    Video,
    decode_video,
    list_frames,
    natural_key,
)

logger = logging.getLogger(__name__)


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
        return _long_enough([_decode_training_video(path, cfg)], cfg.gap, single=True)
    if (path / "JPEGImages").is_dir():
        return _long_enough(_davis_videos(path, cfg), cfg.gap)
    video_files = sorted((p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES), key=natural_key)
    if video_files:
        return _long_enough(_decode_videos(video_files, cfg), cfg.gap)
    frames = list_frames(path)
    if frames:  # the folder itself is one video
        return _long_enough([Video(path.name, frames)], cfg.gap, single=True)
    return _long_enough(_frame_folder_videos(path), cfg.gap)


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
    resolution = cfg.davis_resolution or davis_resolution(images)
    if resolution is None:  # JPEGImages/<seq>/ with no resolution level (SegTrackv2)
        return _frame_folder_videos(images)
    folder = images / resolution
    if not folder.is_dir():
        raise DataError(f"DAVIS resolution folder not found: {folder}")
    if cfg.davis_split is None:
        names = [p.name for p in sorted(folder.iterdir(), key=natural_key) if p.is_dir()]
    else:
        names = davis_split(root / "ImageSets" / resolution / f"{cfg.davis_split}.txt")
    videos = []
    for name in names:
        if not (folder / name).is_dir():
            raise DataError(f"sequence '{name}' of split '{cfg.davis_split}' not found in {folder}")
        videos.append(Video(name, list_frames(folder / name)))
    if not videos:
        raise DataError(f"no sequences found in {folder}")
    return videos


def davis_resolution(images: Path, preferred: Optional[str] = None) -> Optional[str]:
    """The resolution folder of a DAVIS ``JPEGImages`` folder to read: the only one, else
    ``preferred`` where present, else the largest (Full-Resolution > 1080p > 480p > 240p).
    None where JPEGImages holds sequences of frames directly (SegTrackv2's layout)."""
    if not images.is_dir():
        raise DataError(f"DAVIS frame folder not found: {images}")
    folders = sorted(p for p in images.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataError(f"no resolution folders (480p, ...) in {images}")
    if list_frames(folders[0]):
        return None
    if preferred is not None and any(folder.name == preferred for folder in folders):
        return preferred

    def size(name: str) -> float:
        match = re.fullmatch(r"(\d+)p", name)
        return float(match.group(1)) if match else math.inf if name == "Full-Resolution" else -1.0

    return max((folder.name for folder in folders), key=size)


def davis_split(path: Path) -> list:
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
            videos.append(_decode_training_video(path, cfg))
        except DataError as err:
            logger.warning("skipping video: %s", err)
    return videos


def _decode_training_video(path: Path, cfg: DataConfig) -> Video:
    """A video file's frames, downscaled to what the augmentation can use (docs/method.md#training)."""
    max_short_edge = max(math.ceil(cfg.short_edge * max(cfg.scale_range)), *cfg.crop_size)
    return decode_video(path, max_short_edge=max_short_edge)[0]
