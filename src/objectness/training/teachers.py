"""The teachers of the distillation (objectives/distillation.py): frozen f_A of trained runs.

Each teacher is read as ``segment`` reads it: its objectness channel, averaged
over its test scales (``data.test_scales`` of its test shorter edge, relative
to the scale of the batch), and refined by the guided filter of each training
crop where the teacher has one (``data.test_guided_radius``, a fraction of the
crop's shorter edge; inference/refine.py), at the crop's resolution before it
is averaged down to the student's mask grid.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F

from ..config import check_guided_filter, check_test_scales
from ..inference.forward import mean_objectness
from ..inference.refine import refine_objectness
from ..inference.sizing import inference_short_edge, multiple_of_8
from ..model.checkpoint import CheckpointError, load_model


class Teachers:
    """Frozen appearance networks whose mean objectness map the student learns.

    checkpoints: run folders or weight files, each with its objectness channel
    stored (``objectness channels``); student_short_edge: the shorter edge the
    training frames are resized to (``data.short_edge``), against which each
    teacher's own test scale is set.
    """

    def __init__(self, checkpoints, student_short_edge: int, device):
        if not checkpoints:
            raise CheckpointError("loss.distill_weight > 0 needs teachers: name their checkpoints in loss.distill_from")
        self.members = []  # (f_A, channel, scales relative to the batch, (guided radius, eps))
        for path in checkpoints:
            model, cfg, meta = load_model(path, map_location=device)
            channel = meta.get("objectness_channel")
            if channel is None:
                raise CheckpointError(f"teacher {path}: no objectness channel is stored with it; "
                                      "run `objectness channels` on it first")
            self._add(model, cfg, channel, student_short_edge)

    @classmethod
    def of_model(cls, model, cfg, channel: int, student_short_edge: int) -> "Teachers":
        """A frozen copy of one model in memory as the only teacher (test-time adaptation's anchor)."""
        teachers = cls.__new__(cls)
        teachers.members = []
        teachers._add(copy.deepcopy(model), cfg, channel, student_short_edge)
        return teachers

    def _add(self, model, cfg, channel: int, student_short_edge: int) -> None:
        appearance = model.appearance.eval().requires_grad_(False)
        relative = inference_short_edge(cfg) / student_short_edge
        scales = [relative * s for s in check_test_scales(cfg.data.test_scales)]
        guided = check_guided_filter(cfg.data.test_guided_radius, cfg.data.test_guided_eps)
        self.members.append((appearance, channel, scales, guided))

    @torch.no_grad()
    def objectness(self, images: torch.Tensor, size) -> torch.Tensor:
        """(B, h, w) mean objectness map of the teachers on ``images`` (B, 3, H, W) in 0..1, at ``size``."""
        total = 0
        for appearance, channel, scales, (radius, eps) in self.members:
            sizes = [[multiple_of_8(side * scale) for side in images.shape[-2:]] for scale in scales]
            if radius == 0:
                total = total + mean_objectness(appearance, images.float(), channel, sizes, size)
                continue
            maps = mean_objectness(appearance, images.float(), channel, sizes, images.shape[-2:]).clamp(0, 1)
            refined = _refined(images, maps, radius, eps).to(images.device)
            total = total + F.interpolate(refined[:, None], size=tuple(size), mode="area")[:, 0]
        return (total / len(self.members)).clamp(0, 1)


def _refined(images: torch.Tensor, maps: torch.Tensor, radius: float, eps: float) -> torch.Tensor:
    """Each map (B, H, W) refined by the guided filter of its image (B, 3, H, W) in 0..1, on the CPU."""
    colours = images.detach().float().permute(0, 2, 3, 1).cpu().numpy()
    return torch.from_numpy(np.stack([refine_objectness(image, soft, radius, eps)
                                      for image, soft in zip(colours, maps.cpu().numpy())]))
