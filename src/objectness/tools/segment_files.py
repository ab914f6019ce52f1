"""``objectness segment``: image files, video files and folders in; maps, masks and overlays out.

Each input gets its own folder under ``--out``: per image or frame an 8-bit
soft map, a mask and an overlay; per video also overlay.mp4 and channels.png.
Videos are adapted to first where asked (training/adapt.py).
"""
from __future__ import annotations

import contextlib
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..data.video import (
    IMAGE_SUFFIXES,
    VIDEO_FPS,
    VIDEO_SUFFIXES,
    DataError,
    FrameError,
    Video,
    VideoWriter,
    decode_video,
    list_frames,
    natural_key,
)
from ..evaluation.metrics import binarise
from ..files import distinct_names
from ..inference.forward import frames_to_tensor
from ..inference.segmenter import Segmenter, all_channels, segment_frames
from ..training.adapt import adapt
from ..visualize import mask_strip, overlay, save_image_atomic, soft_map_to_png

log = logging.getLogger(__name__)


@dataclass
class Input:
    """One thing to segment, written to its own output folder ``name``."""

    name: str
    path: Path
    kind: str  # "image", "images" (a folder of independent images), "frames" (a folder as a video), "video"


def collect_inputs(paths, images: bool = False) -> tuple:
    """(inputs, skipped): what to segment among ``paths``, and how many paths were unusable (warned).

    An image file is an image; a video file is a video; a folder of images is a
    video of its frames in name order, or independent images with ``images``; a
    folder with no images stands for its video files.
    """
    inputs, skipped = [], 0
    for path in map(Path, paths):
        found = _inputs_of(path, images)
        if not found:
            skipped += 1
        inputs += found
    for item, name in zip(inputs, distinct_names([item.name for item in inputs])):
        item.name = name  # two inputs called x would write to one folder
    return inputs, skipped


def _inputs_of(path: Path, images: bool) -> list:
    suffix = path.suffix.lower()
    if path.is_file() and suffix in IMAGE_SUFFIXES:
        return [Input(path.stem, path, "image")]
    if path.is_file() and suffix in VIDEO_SUFFIXES:
        return [Input(path.stem, path, "video")]
    if path.is_dir():
        if list_frames(path):
            return [Input(path.name, path, "images" if images else "frames")]
        videos = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES]
        if videos:
            return [Input(p.stem, p, "video") for p in sorted(videos, key=natural_key)]
        log.warning("skipping %s: a folder with no images (%s) or videos", path, ", ".join(IMAGE_SUFFIXES))
    elif path.exists():
        log.warning("skipping %s: not an image (%s) or a video (%s)", path,
                    ", ".join(IMAGE_SUFFIXES), ", ".join(VIDEO_SUFFIXES))
    else:
        log.warning("skipping %s: not found", path)
    return []


def segment_inputs(segmenter: Segmenter, paths, out_dir, threshold: float = 0.5, adapt_steps: int = 0,
                   images: bool = False, overwrite: bool = False, progress: bool = True, seed: int = 0,
                   relative_threshold: bool = False) -> dict:
    """Segment image files, video files and folders; results go to ``out_dir/<input name>/``.

    Per image or frame: <stem>_soft.png (8-bit soft map), <stem>_mask.png (soft map
    > threshold, or > threshold times its maximum if ``relative_threshold``; 0/255) and
    <stem>_overlay.jpg; per video also overlay.mp4 and
    channels.png (every mask channel and the segment flow of the first pair).
    Unreadable files are skipped with a warning. Returns {"outputs": [folders], "skipped": count}.
    """
    out_dir = Path(out_dir)
    inputs, skipped = collect_inputs(paths, images)
    if not inputs:
        raise DataError("no image, video or folder of frames to segment among the inputs")
    for item in inputs:  # refuse before any work is done
        folder = out_dir / item.name
        if folder.exists() and not overwrite:
            raise FileExistsError(f"output folder {folder} exists; pass --overwrite to replace it")
    single_images = sum(item.kind == "image" for item in inputs)
    if adapt_steps > 0 and single_images:
        log.warning("adaptation needs a video: %d single image(s) are segmented without it", single_images)
    outputs = []
    for item in tqdm(inputs, desc="inputs", unit="input", disable=not progress or len(inputs) == 1):
        try:
            video, fps = _read_input(item)
        except DataError as err:
            log.warning("skipping %s", err)
            skipped += 1
            continue
        folder = _fresh_folder(out_dir / item.name)
        written = _write_segmentation(segmenter, item, video, fps, folder, threshold, relative_threshold,
                                      adapt_steps, progress, seed)
        skipped += len(video) - written
        if written:
            outputs.append(folder)
        else:
            shutil.rmtree(folder)
    if not outputs:
        raise DataError("none of the inputs could be read")
    return {"outputs": outputs, "skipped": skipped}


def _read_input(item: Input) -> tuple:
    """(Video of the input's frames, frames per second or None); DataError if it cannot be read."""
    if item.kind == "image":
        video = Video(item.name, [item.path])
        try:
            return Video(item.name, [video.read(0)]), None
        except FrameError as err:
            raise DataError(f"unreadable image {err}") from None
    if item.kind == "video":
        return decode_video(item.path, item.name)
    return Video(item.name, list_frames(item.path)), VIDEO_FPS


def _fresh_folder(folder: Path) -> Path:
    if folder.is_dir():
        shutil.rmtree(folder)
    elif folder.exists():
        folder.unlink()
    folder.mkdir(parents=True)
    return folder


def _write_segmentation(segmenter, item: Input, video: Video, fps, folder: Path, threshold: float,
                        relative_threshold: bool, adapt_steps: int, progress: bool, seed: int) -> int:
    """Write the outputs of one input; returns how many of its frames were readable."""
    is_video = item.kind in ("frames", "video")
    if is_video:
        try:
            segmenter = adapt(segmenter, video, adapt_steps, progress, seed)
        except DataError as err:  # e.g. too few readable frames for a pair
            log.warning("%s: cannot adapt (%s); segmenting without adaptation", item.name, err)
    first_frames, written = [], 0
    with VideoWriter(folder / "overlay.mp4", fps) if is_video else contextlib.nullcontext() as writer:
        for index, frame, soft in segment_frames(segmenter, video, progress):
            stem = _stem(item, video, index)
            mask = binarise(soft, threshold, relative_threshold)
            save_image_atomic(soft_map_to_png(soft), folder / f"{stem}_soft.png")
            save_image_atomic(Image.fromarray(mask.astype(np.uint8) * 255), folder / f"{stem}_mask.png")
            tinted = overlay(frame, mask)
            save_image_atomic(tinted, folder / f"{stem}_overlay.jpg")
            if writer is not None:
                writer.write(tinted)
            if len(first_frames) < 2:
                first_frames.append(frame)
            written += 1
    if is_video and first_frames:
        masks, flow = all_channels(segmenter, *first_frames)
        strip = mask_strip(frames_to_tensor(np.stack(first_frames[:1]))[0], masks, flow)
        save_image_atomic(strip, folder / "channels.png")
    return written


def _stem(item: Input, video: Video, index: int) -> str:
    """Output names: the image's own name, or the frame's file name, or the frame number of a video file."""
    if item.kind == "image":
        return item.path.stem
    if item.kind == "video":
        return f"{index:05d}"
    return Path(video.frames[index]).stem
