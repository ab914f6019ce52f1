"""Motion masks: a foreground mask per frame from its classical flow alone (not the paper's).

A non-learned teacher for f_A. The camera's motion is fitted to the whole
frame's flow by one affine model, robustly (iteratively reweighted least
squares, weights 1 / max(|r|, 0.5 px), so the moving object barely pulls the
fit); what the fit leaves unexplained is the independent motion, and Otsu's
threshold on it splits the frame into moving object and background. On the 6
DAVIS training videos held out in MODEL_CARD.md these masks score J 0.51 with
no learning at all. With ``loss.motion_mask_weight`` > 0 the objectness
channel ``loss.motion_mask_channel`` of f_A learns to predict them from one
image (binary cross-entropy); frames whose flow holds no independent motion
are left out of the loss. Off in the ``paper`` preset.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .flow_fit import fit_segment_motion

ITERATIONS = 5
RESIDUAL_FLOOR = 0.5  # px: residuals below this count as this in the reweighting
MIN_MOTION = 1.0  # px: a frame whose largest residual is smaller holds no independent motion
BINS = 256  # Otsu's histogram


def camera_residual(flow: torch.Tensor) -> torch.Tensor:
    """(B, h, w): the length of what a robust affine fit of each frame's flow leaves unexplained.

    flow: (B, 2, h, w) in pixels. The fit is flow_fit's weighted least squares
    with one segment whose weights are 1 / max(|residual|, RESIDUAL_FLOOR).
    """
    flow = flow.float()
    weights = torch.ones_like(flow[:, :1])  # (B, 1, h, w)
    for _ in range(ITERATIONS):
        fitted = fit_segment_motion(flow, weights, "affine")[:, 0]  # (B, 2, h, w)
        residual = (flow - fitted).norm(dim=1)  # (B, h, w)
        weights = 1 / residual.clamp(min=RESIDUAL_FLOOR).unsqueeze(1)
    return residual


def otsu_threshold(values: torch.Tensor) -> torch.Tensor:
    """Otsu's threshold of each row of ``values`` (B, P), all >= 0: the one that maximises the
    between-class variance of a 256-bin histogram from 0 to the row's maximum. Returns (B,)."""
    top = values.max(dim=1, keepdim=True).values.clamp(min=1e-12)
    bins = (values / top * (BINS - 1)).round().long()  # as OpenCV's uint8 image
    hist = torch.zeros(values.shape[0], BINS, device=values.device).scatter_add_(1, bins, torch.ones_like(values))
    p = hist / values.shape[1]
    levels = torch.arange(BINS, device=values.device, dtype=torch.float32)
    omega = p.cumsum(1)  # share of the class at or below each level
    mu = (p * levels).cumsum(1)
    between = (mu[:, -1:] * omega - mu).pow(2) / (omega * (1 - omega)).clamp(min=1e-12)
    level = between.argmax(dim=1).float()  # pixels above this level are foreground
    return (level + 0.5) / (BINS - 1) * top.squeeze(1)


def motion_masks(flow: torch.Tensor) -> tuple:
    """Foreground masks from flow: (B, h, w) in {0, 1}, and (B,) whether each frame has a mask at all.

    flow: (B, 2, h, w) in pixels. A frame whose robust affine fit leaves less
    than MIN_MOTION px anywhere is everything camera: its mask is empty and
    it is marked invalid.
    """
    residual = camera_residual(flow)
    flat = residual.flatten(1)
    masks = (flat > otsu_threshold(flat).unsqueeze(1)).reshape(residual.shape).float()
    valid = flat.max(dim=1).values >= MIN_MOTION
    return masks * valid[:, None, None], valid


def motion_mask_loss(flow: torch.Tensor, masks: torch.Tensor, channel: int) -> torch.Tensor:
    """Binary cross-entropy of f_A's objectness channel against the flow's motion masks.

    flow: (B, 2, h, w) classical flow in pixels; masks: (B, c, h', w') soft
    masks (softmax over c), resized to the flow's grid. Frames without
    independent motion are left out; a batch without any gives 0.
    """
    if not 0 <= channel < masks.shape[1]:
        raise ValueError(f"loss.motion_mask_channel {channel} is not one of the {masks.shape[1]} mask channels")
    with torch.autocast(flow.device.type, enabled=False):
        target, valid = motion_masks(flow.float())
        prob = masks[:, channel:channel + 1].float()
        if prob.shape[-2:] != flow.shape[-2:]:
            prob = F.interpolate(prob, size=flow.shape[-2:], mode="bilinear", align_corners=False)
        prob = prob[:, 0].clamp(1e-6, 1 - 1e-6)
        bce = F.binary_cross_entropy(prob, target, reduction="none").mean(dim=(1, 2))  # (B,)
        return (bce * valid).sum() / valid.sum().clamp(min=1)
