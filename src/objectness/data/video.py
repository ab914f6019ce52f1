"""Frames and videos: what every part of the package reads images and video files with.

A ``Video`` is a named sequence of frames (image paths, encoded bytes or uint8
arrays) read one at a time; ``decode_video`` is the one PyAV decoder (every
frame kept JPEG-encoded in memory for random access) and ``VideoWriter`` the
one .mp4 writer.
"""
from __future__ import annotations

import io
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from ..files import publish, temporary_beside

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".webm", ".mkv")
VIDEO_FPS = 24  # overlay.mp4 of a folder of frames, which has no frame rate of its own


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
                return rgb8(image)  # converting loads: truncated files raise here
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            raise FrameError(f"{self.frame_name(i)}: {err}") from None

    def frame_name(self, i: int) -> str:
        frame = self.frames[i]
        return str(frame) if isinstance(frame, (str, Path)) else f"{self.name} frame {i}"


SIXTEEN_BIT_GREY = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # PIL's modes of 16-bit (and 32-bit) grey


def rgb8(image: Image.Image) -> np.ndarray:
    """Any image PIL opens as uint8 (H, W, 3) RGB; ValueError for one it cannot be.

    16-bit grey is scaled to 8 bits (``convert("RGB")`` would clip it to white),
    palette, 1-bit, grey, CMYK and YCbCr are converted, alpha is dropped; 16-bit
    RGB is already read as 8 bits by PIL. Float images have no agreed range and
    are refused.
    """
    if image.mode in SIXTEEN_BIT_GREY:
        return np.repeat(_grey16_to_8(np.asarray(image))[..., None], 3, axis=2)
    if image.mode == "F":
        raise ValueError("a 32-bit float image has no agreed range of values; save it with 8 or 16 bits")
    try:
        return np.asarray(image.convert("RGB"))
    except ValueError:
        raise ValueError(f"images of mode {image.mode} cannot be brought to RGB") from None


def grey8(image: Image.Image) -> np.ndarray:
    """Any grey or colour image PIL opens as uint8 (H, W) grey levels, 16-bit grey scaled to 8 bits."""
    if image.mode in SIXTEEN_BIT_GREY:
        return _grey16_to_8(np.asarray(image))
    if image.mode == "F":
        raise ValueError("a 32-bit float image has no agreed range of values; save it with 8 or 16 bits")
    return np.asarray(image.convert("L"))


def _grey16_to_8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.round(values.astype(np.float32) / 257), 0, 255).astype(np.uint8)  # 65535 -> 255


def read_image(path) -> np.ndarray:
    """An image file as uint8 (H, W, 3) RGB (see ``rgb8``); DataError naming the file if it cannot be."""
    try:
        with Image.open(path) as image:
            return rgb8(image)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise DataError(f"{path}: cannot be read as an image ({err})") from None


def as_rgb_array(image) -> np.ndarray:
    """A PIL image or an array as a uint8 (H, W, 3) RGB array; DataError for one that cannot be.

    Arrays may be (H, W) grey or (H, W, 3 or 4) colour, uint8, uint16 (scaled to 8 bits)
    or float in 0..1.
    """
    if isinstance(image, Image.Image):
        try:
            return rgb8(image)
        except ValueError as err:
            raise DataError(str(err)) from None
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise DataError(f"an image must be (H, W) or (H, W, 3) with 3 or 4 colours, got shape {array.shape}")
    array = array[..., :3]
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return _grey16_to_8(array)
    if np.issubdtype(array.dtype, np.floating) and np.isfinite(array).all() and array.min() >= 0 and array.max() <= 1:
        return np.round(array * 255).astype(np.uint8)
    raise DataError(f"image values must be uint8, uint16 or floats in 0..1, got {array.dtype} "
                    f"in {array.min()}..{array.max()}")


def as_video(frames, name: str = "video") -> Video:
    """A Video as it is, or a sequence of frames (PIL images or uint8 (H, W, 3) arrays) as one."""
    return frames if isinstance(frames, Video) else Video(name, [as_rgb_array(frame) for frame in frames])


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


def decode_video(path, name=None, max_short_edge=None, max_frames=None) -> tuple:
    """(Video, frames per second) of every frame of a video file, JPEG-encoded in memory (random access).

    ``max_short_edge``: frames with a longer shorter edge are downscaled to it
    (training keeps no more than its augmentation can use); None keeps full size.
    ``max_frames``: decoding stops after this many frames; None reads them all.
    ``name`` defaults to the file's stem. DataError if the file cannot be decoded.
    """
    import av  # only video files need PyAV

    path = Path(path)
    frames = []
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            fps = stream.average_rate
            for frame in container.decode(stream):
                frames.append(_encode(frame.to_image(), max_short_edge))
                if max_frames is not None and len(frames) >= max_frames:
                    break
    except (av.FFmpegError, OSError, IndexError) as err:
        raise DataError(f"unreadable video {path}: {err}") from None
    if not frames:
        raise DataError(f"unreadable video {path}: no frames")
    return Video(name or path.stem, frames), fps or VIDEO_FPS


def _encode(image: Image.Image, max_short_edge=None) -> bytes:
    scale = max_short_edge / min(image.size) if max_short_edge else 1.0
    if scale < 1:
        size = round(image.width * scale), round(image.height * scale)
        image = image.resize(size, Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


class VideoWriter:
    """An .mp4 written to a temporary file and renamed on success: H.264 where PyAV has it, else MPEG-4.

    The first frame fixes the size, cut to even numbers as yuv420p needs; frames
    of another size are resized to it.
    """

    def __init__(self, path, fps=VIDEO_FPS):
        self.path, self.fps = Path(path), Fraction(fps).limit_denominator(1001)
        self.container = self.stream = self.first_size = self.size = None
        self.tmp = temporary_beside(self.path)

    def _open(self, width: int, height: int) -> None:
        import av

        self.first_size = (width, height)
        self.size = (max(2, width - width % 2), max(2, height - height % 2))
        self.container = av.open(str(self.tmp), mode="w", format="mp4")
        try:
            self.stream = self.container.add_stream("libx264", rate=self.fps)
        except (av.FFmpegError, ValueError):
            self.stream = self.container.add_stream("mpeg4", rate=self.fps)
            self.stream.bit_rate = 8_000_000
        self.stream.width, self.stream.height = self.size
        self.stream.pix_fmt = "yuv420p"

    def write(self, image: Image.Image) -> None:
        import av

        if self.container is None:
            self._open(*image.size)
        if image.size == self.first_size:
            image = image.crop((0, 0, *self.size))
        else:
            image = image.resize(self.size, Image.Resampling.BILINEAR)
        for packet in self.stream.encode(av.VideoFrame.from_image(image.convert("RGB"))):
            self.container.mux(packet)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, traceback):
        try:
            if self.container is not None:
                if exc_type is None:
                    for packet in self.stream.encode():
                        self.container.mux(packet)
                self.container.close()
            if exc_type is None and self.container is not None:
                publish(self.tmp, self.path)
        finally:
            self.tmp.unlink(missing_ok=True)
        return False
