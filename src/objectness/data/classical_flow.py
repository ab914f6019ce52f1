"""Classical optical flow for the training pairs, computed once and cached (not the paper's).

OpenCV's DIS flow (Kroeger et al., ECCV 2016) is learned from nothing: it is
a coarse-to-fine patch search with variational refinement. It gives every
training pair a dense flow that ``objectives/flow_fit.py`` uses to bootstrap the binding
of masks and motion (``loss.flow_fit_weight``); the paper's objective uses no
such flow.

For every pair (i, i + gap) of every video both directions are stored:
``forward`` is the flow that rebuilds frame i by sampling frame i + gap
(frame i's pixel p is at p + flow(p) in frame i + gap), ``backward`` the
reverse. Flows are computed at the frames' own resolution, resized to a
shorter edge of ``cache_short_edge`` and kept as float16 in one memory-mapped
``.npy`` file, so data-loader workers share it without copies.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..files import atomic_write, write_text

log = logging.getLogger(__name__)

CACHE_VERSION = 1


def default_cache_dir() -> Path:
    """$OBJECTNESS_CACHE/flow, or ~/.cache/objectness/flow."""
    base = os.environ.get("OBJECTNESS_CACHE") or Path.home() / ".cache" / "objectness"
    return Path(base) / "flow"


def dis_flow(image1: np.ndarray, image2: np.ndarray) -> np.ndarray:
    """(H, W, 2) float32 flow from image1 to image2 (image1(p) ~ image2(p + flow(p))), uint8 RGB in."""
    import cv2  # only flow caching needs OpenCV

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    gray1 = cv2.cvtColor(np.ascontiguousarray(image1), cv2.COLOR_RGB2GRAY)
    gray2 = cv2.cvtColor(np.ascontiguousarray(image2), cv2.COLOR_RGB2GRAY)
    return dis.calc(gray1, gray2, None)


def cache_short_edge(data_cfg) -> int:
    """The shorter edge flows are kept at: the largest the training resize draws (DataConfig)."""
    return math.ceil(data_cfg.short_edge * max(data_cfg.scale_range))


def resize_flow_array(flow: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a (H, W, 2) flow to (height, width, 2), scaling its x and y values with the grid."""
    import cv2

    h, w = flow.shape[:2]
    if (h, w) == (height, width):
        return flow
    resized = cv2.resize(flow, (width, height), interpolation=cv2.INTER_AREA if height < h else cv2.INTER_LINEAR)
    return resized * np.array([width / w, height / h], dtype=np.float32)


class FlowCache:
    """Forward and backward flow of every pair (i, i + gap); ``flow(video, i, j)`` for either order."""

    def __init__(self, flows: np.ndarray, index: dict):
        self.flows = flows  # (N, 2 directions, h, w, 2) float16
        self.index = index  # video name -> row of its first pair

    def flow(self, video: str, i: int, j: int) -> np.ndarray:
        """Flow that rebuilds frame i of ``video`` by sampling frame j, (h, w, 2) float32."""
        first = min(i, j)
        row = self.index[video] + first
        return np.asarray(self.flows[row, 0 if i < j else 1], dtype=np.float32)


def cache_key(videos: list, gap: int, short_edge: int) -> str:
    """A digest of what the flows depend on: frame names and counts, gap, size, method."""
    description = {
        "version": CACHE_VERSION,
        "method": "opencv-dis-medium",
        "gap": gap,
        "short_edge": short_edge,
        "videos": [[video.name, len(video), video.frame_name(0), video.frame_name(len(video) - 1)] for video in videos],
    }
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:16]


def load_or_compute(videos: list, gap: int, short_edge: int, cache_dir=None) -> FlowCache:
    """The flows of ``videos`` at ``gap``, from the cache if there, else computed (with a progress bar) and saved."""
    folder = Path(cache_dir) if cache_dir else default_cache_dir()
    key = cache_key(videos, gap, short_edge)
    array_path, index_path = folder / f"{key}.npy", folder / f"{key}.json"
    if array_path.is_file() and index_path.is_file():
        log.info("classical flow from the cache %s", array_path)
        return FlowCache(np.load(array_path, mmap_mode="r"), json.loads(index_path.read_text()))
    folder.mkdir(parents=True, exist_ok=True)
    flows, index = compute_flows(videos, gap, short_edge)
    atomic_write(array_path, lambda temporary: _save_array(temporary, flows))
    write_text(index_path, json.dumps(index))  # written last: its presence marks a complete cache
    log.info("classical flow of %d pairs cached in %s", len(flows), array_path)
    return FlowCache(np.load(array_path, mmap_mode="r"), index)


def _save_array(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:  # a file object: np.save would append .npy to a name
        np.save(f, array)


def compute_flows(videos: list, gap: int, short_edge: int, progress: bool = True) -> tuple:
    """(N, 2, h, w, 2) float16 flows of every pair and the index of each video's first pair.

    Every frame of one video must have the same size (DAVIS and decoded videos do).
    """
    first = videos[0].read(0)
    height, width = _cache_size(*first.shape[:2], short_edge)
    total = sum(len(video) - gap for video in videos)
    flows = np.zeros((total, 2, height, width, 2), dtype=np.float16)
    index, row = {}, 0
    with tqdm(total=total, desc="classical flow (DIS)", unit="pair", disable=not progress, leave=False) as bar:
        for video in videos:
            index[video.name] = row
            frames = [video.read(i) for i in range(len(video))]
            size = _cache_size(*frames[0].shape[:2], short_edge)
            if size != (height, width):
                raise ValueError(f"video {video.name} has frames of another size than {videos[0].name}; "
                                 "the flow cache needs one frame size")
            for i in range(len(video) - gap):
                for direction, (a, b) in enumerate(((i, i + gap), (i + gap, i))):
                    flows[row, direction] = resize_flow_array(dis_flow(frames[a], frames[b]), height, width)
                row += 1
                bar.update(1)
    return flows, index


def _cache_size(height: int, width: int, short_edge: int) -> tuple:
    scale = min(1.0, short_edge / min(height, width))
    return round(height * scale), round(width * scale)
