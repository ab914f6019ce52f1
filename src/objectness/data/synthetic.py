"""Procedural videos with ground-truth masks: the demo's data and the tests' fixture.

``panning_video`` is simpler: a camera pan over texture, the bench's test video.

A video is a camera moving (translation and a slight zoom) over a large textured
background, with textured objects (one to three by default) that move on their own, each with
its own velocity, bouncing inside the frame and sometimes sticking out of it.
Objects occlude each other in a fixed depth order.

Objects and background differ in appearance, not only in motion, because AMD's
appearance pathway learns objectness from single images: the background is a
low-saturation, earthy multi-scale noise; objects are two saturated colours mixed
by coarse blotches or fine speckle, with a crisp (anti-aliased) boundary. Object
textures are aperiodic: a stripe or checker whose period is near the displacement
between frames makes the motion ambiguous, which stalls flow learning.
Everything is sampled at continuous coordinates, so motion is sub-pixel smooth.
Images are built colour-first, (3, T, H, W) float32: numpy is several times
slower when it broadcasts over a trailing axis of 3.
"""

from __future__ import annotations

import colorsys
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..config import SyntheticConfig, check_synthetic
from ..files import atomic_write, write_text
from .video import Video

SHAPES = ("ellipse", "rectangle", "polygon", "blob")
TEXTURES = {"blotches": (16, 8, 4, 2), "speckle": (6, 3, 2)}  # noise octave cells, in pixels


@dataclass
class SyntheticVideo:
    name: str
    frames: np.ndarray  # (T, H, W, 3) uint8 RGB
    masks: np.ndarray  # (T, H, W) bool, union of all objects = foreground
    object_masks: np.ndarray  # (T, K, H, W) bool, visible part of each object, back to front


def make_video(cfg: SyntheticConfig, index: int) -> SyntheticVideo:
    """Video ``index`` of the synthetic set; a pure function of (cfg, index)."""
    check_synthetic(cfg, "synthetic")
    rng = np.random.default_rng([cfg.seed, index])
    frames = _background(rng, cfg)  # (3, T, H, W) in 0..1
    num_objects = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    object_masks = np.zeros((cfg.num_frames, num_objects, cfg.height, cfg.width), bool)
    for k in range(num_objects):  # back to front: later objects occlude earlier ones
        colour, alpha = _object(rng, cfg)  # (3, T, H, W), (T, H, W)
        frames = frames * (1 - alpha) + colour * alpha
        object_masks[:, k] = alpha > 0.5
        object_masks[:, :k] &= ~object_masks[:, k : k + 1]
    frames = np.round(np.clip(frames, 0, 1) * 255).astype(np.uint8)
    return SyntheticVideo(
        name=f"synthetic-{index:04d}",
        frames=np.ascontiguousarray(frames.transpose(1, 2, 3, 0)),
        masks=object_masks.any(axis=1),
        object_masks=object_masks,
    )


def _background(rng: np.random.Generator, cfg: SyntheticConfig) -> np.ndarray:
    """The camera's view of a larger canvas, one frame per time step: (3, T, H, W)."""
    t = np.arange(cfg.num_frames) - (cfg.num_frames - 1) / 2  # centred time
    direction = rng.uniform(0, 2 * np.pi)
    velocity = cfg.camera_speed * rng.uniform(0.3, 1.0) * np.array([np.sin(direction), np.cos(direction)])
    zoom = (1 + rng.uniform(-cfg.camera_zoom, cfg.camera_zoom)) ** t  # (T,)
    # The canvas holds every frame's field of view, so the camera never runs out of it.
    max_zoom = (1 + cfg.camera_zoom) ** np.abs(t).max()
    half = np.ceil(max_zoom * np.array([cfg.height, cfg.width]) / 2 + np.abs(velocity * t.max()) + 2)
    canvas = _background_texture(rng, int(2 * half[0] + 1), int(2 * half[1] + 1))

    ys = np.arange(cfg.height) - (cfg.height - 1) / 2
    xs = np.arange(cfg.width) - (cfg.width - 1) / 2
    canvas_y = half[0] + zoom[:, None] * ys + (velocity[0] * t)[:, None]  # (T, H)
    canvas_x = half[1] + zoom[:, None] * xs + (velocity[1] * t)[:, None]  # (T, W)
    return _bilinear(canvas, canvas_y, canvas_x)


def _background_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Greyish / earthy multi-scale noise with low saturation: (3, height, width)."""
    brightness = _fractal_noise(rng, height, width, cells=(24, 12, 6, 3, 2), channels=1)
    tint = _fractal_noise(rng, height, width, cells=(64, 16), channels=3) - 0.5
    hsv = rng.uniform(0.05, 0.17), rng.uniform(0.0, 0.2), rng.uniform(0.35, 0.6)
    base = np.array(colorsys.hsv_to_rgb(*hsv), np.float32)[:, None, None]
    return base * (0.35 + 1.3 * brightness) + 0.08 * tint


def _fractal_noise(rng, height: int, width: int, cells: tuple, channels: int) -> np.ndarray:
    """Sum of bilinear value-noise octaves, coarse ones stronger, rescaled to 0..1."""
    noise = np.zeros((channels, height, width), np.float32)
    for cell in cells:
        grid = rng.random((channels, height // cell + 2, width // cell + 2), np.float32)
        noise += cell**0.8 * _bilinear(grid, np.arange(height) / cell, np.arange(width) / cell)
    noise -= noise.min()
    return noise / max(noise.max(), 1e-8)


def _object(rng: np.random.Generator, cfg: SyntheticConfig):
    """One textured object over time: colour (3, T, H, W) and alpha (T, H, W) in 0..1."""
    shape = SHAPES[rng.integers(len(SHAPES))]
    radius = rng.uniform(*cfg.object_size) * min(cfg.height, cfg.width)
    angle = rng.uniform(0, 2 * np.pi)
    direction = rng.uniform(0, 2 * np.pi)
    speed = cfg.max_speed * rng.uniform(0.1, 1.0)  # some objects crawl, some rush
    velocity = speed * np.sin(direction), speed * np.cos(direction)  # (y, x) pixels per frame
    centres = [_bouncing(rng, size, v, cfg.num_frames) for size, v in zip((cfg.height, cfg.width), velocity)]

    # float32: the (T, H, W) grids below dominate the generation time
    ys = (np.arange(cfg.height)[None, :, None] - centres[0][:, None, None]).astype(np.float32)
    xs = (np.arange(cfg.width)[None, None, :] - centres[1][:, None, None]).astype(np.float32)
    # Python-float scalars keep float32 arrays float32 (a numpy float64 scalar would promote them).
    u = xs * math.cos(angle) + ys * math.sin(angle)  # object coordinates: texture moves with it
    v = -xs * math.sin(angle) + ys * math.cos(angle)
    alpha = np.clip(_signed_distance(rng, shape, u, v, radius) + 0.5, 0, 1)
    return _texture(rng, ys, xs, radius), alpha

def _bouncing(rng, size: int, velocity: float, num_frames: int) -> np.ndarray:
    """Centre positions (T,) moving at ``velocity`` and bouncing off [10%, 90%] of the frame."""
    low, span = 0.1 * size, 0.8 * size
    travelled = rng.uniform(0, span) + velocity * np.arange(num_frames)
    return low + span - np.abs(np.mod(travelled, 2 * span) - span)


def _signed_distance(rng, shape: str, u, v, radius: float) -> np.ndarray:
    """Approximate distance to the boundary in pixels, positive inside."""
    if shape == "rectangle":
        half_width, half_height = radius * rng.uniform(0.5, 1.0), radius * rng.uniform(0.5, 1.0)
        return np.minimum(half_width - np.abs(u), half_height - np.abs(v))
    rho, theta = np.sqrt(u * u + v * v), np.arctan2(v, u)
    if shape == "ellipse":
        a, b = radius, radius * rng.uniform(0.4, 1.0)
        boundary = a * b / np.sqrt((b * np.cos(theta)) ** 2 + (a * np.sin(theta)) ** 2)
    elif shape == "polygon":
        sides = int(rng.integers(3, 7))
        sector = 2 * np.pi / sides
        in_sector = theta - sector * np.floor(theta / sector)  # np.mod is slow
        boundary = radius * math.cos(sector / 2) / np.cos(in_sector - sector / 2)
    else:  # blob: a wobbly circle
        boundary = np.full_like(theta, radius)
        for frequency in (2, 3, 4):
            boundary += radius * rng.uniform(0, 0.15) * np.cos(frequency * theta + rng.uniform(0, 2 * np.pi))
    return boundary - rho


def _texture(rng, ys, xs, radius: float) -> np.ndarray:
    """Two saturated colours mixed by noise that moves with the object: (3, T, H, W).

    ``ys`` (T, H, 1) and ``xs`` (T, 1, W) are pixel offsets from the object's centre.
    """
    hue = rng.uniform()
    first = colorsys.hsv_to_rgb(hue, rng.uniform(0.7, 1.0), rng.uniform(0.6, 1.0))
    second_hue = (hue + rng.uniform(0.08, 0.3)) % 1  # a nearby hue: blends of the two stay saturated
    second = colorsys.hsv_to_rgb(second_hue, rng.uniform(0.6, 1.0), rng.uniform(0.4, 1.0))
    cells = list(TEXTURES.values())[rng.integers(len(TEXTURES))]
    size = int(2 * math.ceil(2 * radius) + 3)  # covers the object's bounding box
    noise = _fractal_noise(rng, size, size, cells=cells, channels=1)
    sharpness = rng.uniform(4, 10)
    noise = 1 / (1 + np.exp(-sharpness * (noise - 0.5)))  # (1, size, size): crisper blotches
    pattern = _bilinear(noise, ys[:, :, 0] + size // 2, xs[:, 0, :] + size // 2)[0]  # (T, H, W)
    first, second = (np.array(c, np.float32).reshape(3, 1, 1, 1) for c in (first, second))
    return first + (second - first) * pattern.astype(np.float32)


def _bilinear(image: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Sample ``image`` (C, h, w) on the grid of rows ``ys`` (..., H) and columns ``xs`` (..., W).

    Returns (C, ..., H, W) float32, clamped at the edges. Separable, as a grid of a
    translation and a zoom is: rows first, then columns.
    """
    y0, fy = _split(ys, image.shape[1])
    x0, fx = _split(xs, image.shape[2])
    fy, fx = fy[..., :, None], fx[..., None, :]
    rows = image[:, y0] * (1 - fy) + image[:, y0 + 1] * fy  # (C, ..., H, w)
    columns = x0[None, ..., None, :]  # (1, ..., 1, W)
    left = np.take_along_axis(rows, columns, axis=-1)
    right = np.take_along_axis(rows, columns + 1, axis=-1)
    return left * (1 - fx) + right * fx


def _split(coordinates: np.ndarray, size: int):
    """Integer index of the left neighbour (clamped) and the fraction towards the right one."""
    index = np.clip(np.floor(coordinates).astype(np.int64), 0, size - 2)
    return index, np.clip(coordinates - index, 0, 1).astype(np.float32)


def write_frames(video: SyntheticVideo, folder, masks_folder=None) -> None:
    """Frames as 00000.jpg (JPEG quality 95) and, if asked, masks as 00000.png (0 / 255)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(video.frames):
        image = Image.fromarray(frame)
        atomic_write(folder / f"{t:05d}.jpg", lambda tmp: image.save(tmp, format="JPEG", quality=95, subsampling=0))
    if masks_folder is None:
        return
    masks_folder = Path(masks_folder)
    masks_folder.mkdir(parents=True, exist_ok=True)
    for t, mask in enumerate(video.masks):
        atomic_write(masks_folder / f"{t:05d}.png", Image.fromarray(mask.astype(np.uint8) * 255).save)


def write_dataset(root, cfg: SyntheticConfig) -> list:
    """``cfg.num_videos`` videos in the DAVIS layout under ``root``; returns their names.

    root/JPEGImages/<H>p/<name>/00000.jpg, root/Annotations/<H>p/<name>/00000.png and
    root/ImageSets/<H>p/all.txt, so evaluation code reads synthetic data as DAVIS.
    """
    root = Path(root)
    resolution = f"{cfg.height}p"
    names = []
    for index in tqdm(range(cfg.num_videos), desc="synthetic videos", unit="video"):
        video = make_video(cfg, index)
        write_frames(
            video,
            root / "JPEGImages" / resolution / video.name,
            root / "Annotations" / resolution / video.name,
        )
        names.append(video.name)
    image_sets = root / "ImageSets" / resolution
    image_sets.mkdir(parents=True, exist_ok=True)
    write_text(image_sets / "all.txt", "".join(f"{name}\n" for name in names))
    return names


def panning_video(num_frames: int, size: tuple = (480, 854), pan: int = 8, seed: int = 0) -> Video:
    """A camera pan of ``pan`` pixels per frame over smooth random texture, (H, W) = ``size``,
    JPEG-encoded as ``objectness segment`` holds a video file (the bench's test video)."""
    height, width = size
    rng = np.random.default_rng(seed)
    full_width = width + pan * num_frames
    cells = rng.integers(0, 256, (height // 16, full_width // 16, 3), dtype=np.uint8)
    texture = Image.fromarray(cells).resize((full_width, height), Image.Resampling.BILINEAR)
    frames = []
    for t in range(num_frames):
        buffer = io.BytesIO()
        texture.crop((pan * t, 0, pan * t + width, height)).save(buffer, format="JPEG", quality=95)
        frames.append(buffer.getvalue())
    return Video("synthetic-480p", frames)
