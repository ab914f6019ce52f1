"""Zero-shot segmentation of images and of videos per image (docs/method.md#saliency).

Only the appearance network f_A segments: its objectness channel is the soft
objectness map, averaged over the test scales and refined by the guided filter
where the checkpoint asks for them.

    segmenter = load_segmenter("runs/amd")               # or "centre-prior"; None: the shipped model
    maps = segment_images(segmenter, images)             # uint8 (H, W, 3) -> float32 (H, W) in 0..1
    maps = segment_video(segmenter, frames)              # every frame, per image

Per-video segmentation adapts a copy of the model to the video first
(``objectness.training.adapt``): ``segment_video(adapt(segmenter, frames, 100), frames)``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from ..config import Config, check_guided_filter, check_test_scales
from ..data.saliency_prior import PRIOR_SHORT_EDGE, prior_saliency, shrink_image
from ..data.video import FrameError, Video, as_rgb_array, as_video
from ..device import autocast, memory_format, resolve_device, resolve_precision
from ..model.checkpoint import CheckpointError, load_model
from .centre_prior import centre_prior
from .forward import frames_to_tensor, mean_objectness
from .refine import refine_objectness
from .sizing import (
    inference_short_edge,
    inference_size,
    scaled_short_edges,
)

log = logging.getLogger(__name__)

CENTRE_PRIOR = "centre-prior"  # checkpoint names of the baselines with no weights: a Gaussian blob at the centre,
SALIENCY_PRIOR = "saliency-prior"  # and the classical background-connectivity prior (data/saliency_prior.py),
CONTRAST_PRIOR = "rbd-contrast-prior"  # or that prior at three scales averaged with region contrast (loss.image_prior)
BASELINE_PRIORS = {SALIENCY_PRIOR: "rbd", CONTRAST_PRIOR: "rbd-contrast"}  # their loss.image_prior names
BASELINES = (CENTRE_PRIOR, *BASELINE_PRIORS)
BATCH_SIZE = 8  # images per forward pass at test time


@dataclass
class Segmenter:
    """A trained model, its objectness channel and device; ``model`` None is a baseline with no weights
    (``baseline``: the centre prior or the saliency prior)."""

    model: Optional[torch.nn.Module]  # an AMD in eval mode
    cfg: Optional[Config]
    channel: Optional[int]  # the objectness channel of the masks
    device: torch.device
    short_edge: int = 0  # test-time shorter edge in pixels, a multiple of 8
    scales: tuple = (1.0,)  # the objectness map is the mean over these multiples of short_edge
    guided_radius: float = 0.0  # inference/refine.py: guided filter radius, a fraction of the shorter edge; 0 = off
    guided_eps: float = 0.001
    precision: str = "fp32"  # bf16 or fp32: f_A under bf16 autocast, or not (and adaptation likewise)
    adaptation_noted: bool = field(default=False, repr=False)  # the baseline said once it cannot adapt
    baseline: str = CENTRE_PRIOR  # which baseline, where model is None

    @property
    def is_baseline(self) -> bool:
        return self.model is None


SHIPPED_MODEL = "amd-davis2016-dutstr.safetensors"  # see MODEL_CARD.md


def default_checkpoint() -> Path:
    """The model shipped with the package (MODEL_CARD.md), used when no checkpoint is given."""
    path = Path(__file__).resolve().parents[1] / "weights" / SHIPPED_MODEL
    if not path.is_file():
        raise CheckpointError(f"no checkpoint given and the shipped model {path} is missing: pass --checkpoint "
                              f"(a run folder, last.pt or model.safetensors, or '{CENTRE_PRIOR}' for the baseline)")
    return path


def load_segmenter(checkpoint=None, channel: Optional[int] = None, device="auto", scales=None,
                   guided_radius: Optional[float] = None, precision: Optional[str] = None,
                   guided_eps: Optional[float] = None) -> Segmenter:
    """A segmenter from a run folder, last.pt or .safetensors file, or ``"centre-prior"``;
    None is the model shipped with the package (MODEL_CARD.md).

    The objectness channel is ``channel`` if given, else the one stored with the
    checkpoint by ``objectness channels``. device: auto (CUDA when there is a GPU),
    cpu, cuda, cuda:1, ... scales: multiples of the test shorter edge whose maps
    are averaged (default: the checkpoint's ``data.test_scales``). guided_radius:
    the guided filter's radius as a fraction of the shorter edge, 0 = off (default:
    the checkpoint's ``data.test_guided_radius``); guided_eps: its regularisation (default: the
    checkpoint's ``data.test_guided_eps``). precision: bf16, fp32, or auto
    (bf16 where the device computes it natively; device.py); default: the checkpoint's
    ``train.precision``.
    """
    device = resolve_device(device)
    if checkpoint is None:
        checkpoint = default_checkpoint()
    if str(checkpoint) in BASELINES:
        return Segmenter(None, None, None, device, baseline=str(checkpoint))
    model, cfg, meta = load_model(checkpoint, map_location=device)
    model = memory_format(model, cfg.train.channels_last)
    precision = resolve_precision(precision or cfg.train.precision, device)
    if channel is None:
        channel = meta.get("objectness_channel")
    if channel is None:
        raise CheckpointError(f"{checkpoint}: no objectness channel is stored with this checkpoint; "
                              "run `objectness channels` on it, or pass --channel")
    count = cfg.model.num_segments
    if isinstance(channel, bool) or not isinstance(channel, int) or not 0 <= channel < count:
        raise CheckpointError(f"objectness channel {channel!r} is out of range: "
                              f"{checkpoint} has {count} mask channels (0 to {count - 1})")
    scales = check_test_scales(cfg.data.test_scales if scales is None else scales)
    radius, eps = check_guided_filter(cfg.data.test_guided_radius if guided_radius is None else guided_radius,
                                      cfg.data.test_guided_eps if guided_eps is None else guided_eps)
    return Segmenter(model, cfg, channel, device, inference_short_edge(cfg), scales, radius, eps, precision)


def _to_inference_size(images: list, segmenter: Segmenter, size=None) -> torch.Tensor:
    """Same-size uint8 (H, W, 3) images -> (B, 3, h, w) float in 0..1 on the device, at ``size``
    or else at the test-time size of their own."""
    batch = frames_to_tensor(np.stack(images)).to(segmenter.device)  # (B, 3, H, W)
    size = size or inference_size(*images[0].shape[:2], segmenter.short_edge)
    return F.interpolate(batch, size=size, mode="bilinear", align_corners=False, antialias=True)


@torch.no_grad()
def _objectness(segmenter: Segmenter, images: list) -> list:
    """Soft objectness maps of same-size uint8 images, each float32 (H, W) in 0..1: the mean of
    the objectness channel at each of the segmenter's scales, upsampled to the images, then
    refined by the guided filter of each image where the segmenter has a radius."""
    height, width = images[0].shape[:2]
    if segmenter.is_baseline:
        return [_baseline_map(segmenter, image) for image in images]
    batch = frames_to_tensor(np.stack(images)).to(segmenter.device)  # (B, 3, H, W)
    sizes = [inference_size(height, width, edge) for edge in scaled_short_edges(segmenter.short_edge, segmenter.scales)]
    with autocast(segmenter.device, segmenter.precision):
        maps = mean_objectness(segmenter.model.appearance.eval(), batch, segmenter.channel, sizes, (height, width))
    return [refine_objectness(image, soft, segmenter.guided_radius, segmenter.guided_eps)
            for image, soft in zip(images, maps.clamp(0, 1).cpu().numpy())]


def _baseline_map(segmenter: Segmenter, image: np.ndarray) -> np.ndarray:
    """The map of a baseline with no weights: the centre prior, or a saliency prior at its own scale."""
    if segmenter.baseline in BASELINE_PRIORS:
        prior = prior_saliency(shrink_image(image, PRIOR_SHORT_EDGE), BASELINE_PRIORS[segmenter.baseline])
        size = (image.shape[1], image.shape[0])
        return np.asarray(Image.fromarray(prior).resize(size, Image.Resampling.BILINEAR), dtype=np.float32)
    return centre_prior(*image.shape[:2])


def segment_images(segmenter: Segmenter, images, batch_size: int = BATCH_SIZE) -> list:
    """Soft objectness maps (f_A only, docs/method.md#saliency), each float32 (H, W) in 0..1 at its image's size.

    images: uint8 (H, W, 3) RGB arrays or PIL images, of any sizes; images of
    one size go through the network together.
    """
    images = [as_rgb_array(image) for image in images]
    maps = [None] * len(images)
    by_size = {}
    for index, image in enumerate(images):
        by_size.setdefault(image.shape, []).append(index)
    for indices in by_size.values():
        for start in range(0, len(indices), batch_size):
            chunk = indices[start:start + batch_size]
            for index, soft in zip(chunk, _objectness(segmenter, [images[i] for i in chunk])):
                maps[index] = soft
    return maps


def segment_frames(segmenter: Segmenter, video: Video, progress: bool = True):
    """Yield (index, frame, soft map) for each readable frame of ``video``, in order.

    An unreadable frame is skipped with a warning. No adaptation here: see ``adapt``.
    """
    bar = tqdm(total=len(video), desc=f"segmenting {video.name}", unit="frame", disable=not progress, leave=False)
    with bar:
        for start in range(0, len(video), BATCH_SIZE):
            indices, frames = [], []
            for index in range(start, min(start + BATCH_SIZE, len(video))):
                try:
                    frames.append(video.read(index))
                    indices.append(index)
                except FrameError as err:
                    log.warning("skipping unreadable frame: %s", err)
            yield from zip(indices, frames, segment_images(segmenter, frames))
            bar.update(min(BATCH_SIZE, len(video) - start))


def segment_video(segmenter: Segmenter, frames, progress: bool = True):
    """Soft objectness maps of every frame of a video, per image (docs/method.md#video-object-segmentation).

    frames: a sequence of uint8 (H, W, 3) frames or a data.Video. For the
    per-video protocol, adapt first: ``segment_video(adapt(segmenter, frames, 100), frames)``.
    Returns float32 (N, H, W) in 0..1 (a list of (H, W) maps if the frames differ in size).
    """
    maps = [soft for _, _, soft in segment_frames(segmenter, as_video(frames), progress)]
    return np.stack(maps) if len({m.shape for m in maps}) == 1 else maps


@torch.no_grad()
def all_channels(segmenter: Segmenter, frame1, frame2=None) -> tuple:
    """Every mask channel of frame1 and the segment flow that rebuilds it from frame2.

    frame1, frame2: uint8 (H, W, 3). Returns soft masks, float (c, H, W), and the
    segment flow, (2, H, W) in pixels of frame1 (None without frame2, or for a model
    trained without view synthesis), on the CPU.
    A baseline has one channel and no flow.
    """
    frame1 = as_rgb_array(frame1)
    height, width = frame1.shape[:2]
    if frame2 is not None and not segmenter.is_baseline and not segmenter.cfg.loss.view_synthesis_weight:
        frame2 = None  # f_M was never trained (the flow fit alone): its segment flow means nothing
    if segmenter.is_baseline:
        return torch.from_numpy(_baseline_map(segmenter, frame1))[None], None
    model = segmenter.model.eval()
    image1 = _to_inference_size([frame1], segmenter)  # (1, 3, h, w)
    if frame2 is None:
        with autocast(segmenter.device, segmenter.precision):
            masks, flow = model.appearance(image1), None  # (1, c, h/8, w/8)
    else:
        image2 = _to_inference_size([as_rgb_array(frame2)], segmenter, size=image1.shape[-2:])
        with autocast(segmenter.device, segmenter.precision):
            out = model(image1, image2)
        masks, flow = out.masks1, out.flows12[0]  # (1, 2, h, w) in test-size pixels
        scale = torch.tensor([width / flow.shape[-1], height / flow.shape[-2]], device=flow.device)
        flow = F.interpolate(flow, size=(height, width), mode="bilinear", align_corners=False)[0] * scale[:, None, None]
        flow = flow.float().cpu()
    masks = F.interpolate(masks.float(), size=(height, width), mode="bilinear", align_corners=False)[0]
    return masks.cpu(), flow


# ---------------------------------------------------------------- objectness segment: files in, files out
