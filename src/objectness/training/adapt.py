"""Test-time adaptation: before segmenting a video, train a copy of the model on it alone
(docs/method.md#video-object-segmentation).

The per-video protocol of the paper: both pathways continue training with the
training objective on frame pairs of the test video only (100 steps), then
the copy segments that video and is thrown away. No label is used.

    maps = segment_video(adapt(segmenter, frames, steps=100), frames)
"""
from __future__ import annotations

import copy
import dataclasses
import logging

import torch
from tqdm import tqdm

from ..data.classical_flow import FlowCache, cache_short_edge, compute_flows
from ..data.pairs import PairDataset
from ..data.video import as_video
from ..inference.segmenter import Segmenter
from .step import make_optimizer, optimisation_step
from .teachers import Teachers

log = logging.getLogger(__name__)


def adapt(segmenter: Segmenter, frames, steps: int, progress: bool = True, seed: int = 0) -> Segmenter:
    """Test-time adaptation (docs/method.md#video-object-segmentation): a segmenter whose model is a copy trained on this video only.

    ``steps`` steps of the training objective with Adam at the config's train.lr
    (constant) on batches of train.batch_size pairs at data.gap, resized,
    cropped and flipped as in training; a model trained with the flow fit also
    fits the video's own DIS flow. The distillation and still-image terms are
    left out (their teachers and images are not at hand at test time); with
    ``loss.adapt_self_weight`` the objectness channel learns instead the unadapted
    model's own maps, at that weight. ``segmenter`` is left untouched.
    frames: a data.Video or a sequence of uint8 (H, W, 3) frames.
    """
    video = as_video(frames)
    if steps <= 0:
        return segmenter
    if segmenter.is_baseline:
        if not segmenter.adaptation_noted:
            log.warning("the %s baseline has no weights: test-time adaptation does nothing for it", segmenter.baseline)
            segmenter.adaptation_noted = True
        return segmenter
    if len(video) < 2:
        log.info("video '%s' has one frame, no pair to adapt on: segmenting it per image", video.name)
        return segmenter
    cfg, device = segmenter.cfg, segmenter.device
    anchor = cfg.loss.adapt_self_weight
    cfg = dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, distill_weight=anchor, image_weight=0.0,
                                                            paste_weight=0.0, image_paste_weight=0.0,
                                                            image_motion_weight=0.0, distill_channel=segmenter.channel))
    if not (cfg.loss.view_synthesis_weight or cfg.loss.uses_classical_flow):
        if not segmenter.adaptation_noted:
            log.warning("this model was trained on its teachers' maps alone: without them there is no objective "
                        "to adapt with, so videos are segmented per image")
            segmenter.adaptation_noted = True
        return segmenter
    data_cfg = dataclasses.replace(cfg.data, gap=min(cfg.data.gap, len(video) - 1))
    flows = None
    if cfg.loss.uses_classical_flow:  # the objective reads the video's own classical flow: computed here, not cached
        flows = FlowCache(*compute_flows([video], data_cfg.gap, cache_short_edge(data_cfg), progress=progress))
    pairs = PairDataset([video], data_cfg, seed=seed, flows=flows)
    teachers = Teachers.of_model(segmenter.model, segmenter.cfg, segmenter.channel, data_cfg.short_edge) if anchor else None
    model = copy.deepcopy(segmenter.model).train()
    optimizer, _ = make_optimizer(model, cfg.train)  # its poly schedule is never stepped: lr stays train.lr
    batch_size = cfg.train.batch_size
    cuda_devices = []  # the GPU whose generator dropout draws from
    if device.type == "cuda":
        cuda_devices = [torch.cuda.current_device() if device.index is None else device.index]
    with torch.random.fork_rng(devices=cuda_devices):  # seeded, and the caller's generators untouched
        torch.manual_seed(seed)
        bar = tqdm(range(steps), desc=f"adapting to {video.name}", unit="step", disable=not progress, leave=False)
        for step in bar:
            items = [pairs[step * batch_size + i] for i in range(batch_size)]
            batch = torch.stack([item["frames"] for item in items])  # (B, 2, 3, H, W)
            flow = torch.stack([item["flows"] for item in items]).to(device) if flows is not None else None
            optimisation_step(model, optimizer, batch.to(device), cfg, segmenter.precision, flow, teachers)
    return dataclasses.replace(segmenter, model=model.eval())
