"""Segment flow: the bottleneck that binds masks and motion (docs/method.md#segment-flow, eqs. 4-6).

One flow vector per soft mask: motion features are averaged inside each mask
(eq. 4), a small MLP turns each average into a 2-D vector (eq. 5), and the
vectors are laid back on the image through the masks (eq. 6).

Under bf16 autocast these three steps still run in fp32. Early in training the
masks are nearly uniform, so the segment flows of the masks nearly agree and
f_A's gradient is their small difference, which bf16 rounds to noise (cosine
with the fp32 gradient about 0.05 on a fresh model; 0.998 with this bottleneck
in fp32, tests/test_model.py).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def resize_masks(masks: torch.Tensor, size: tuple, mode: str = "area") -> torch.Tensor:
    """(B, c, h, w) -> (B, c, H, W); every output pixel a convex mix of input pixels, so sums stay 1.

    mode "area": area average when shrinking, bilinear (align_corners=False)
    otherwise; "bilinear": bilinear with align_corners=True, as the released
    code resizes masks to each motion level.
    """
    h, w = masks.shape[-2:]
    if (h, w) == tuple(size):
        return masks
    if mode == "bilinear":
        return F.interpolate(masks, size=size, mode="bilinear", align_corners=True)
    if size[0] <= h and size[1] <= w:
        return F.adaptive_avg_pool2d(masks, size)
    return F.interpolate(masks, size=size, mode="bilinear", align_corners=False)


def scale_xy(vectors: torch.Tensor, x_scale: float, y_scale: float) -> torch.Tensor:
    """Scale the (x, y) components of (..., 2) vectors by Python numbers (no tensor made on the device)."""
    return torch.stack([vectors[..., 0] * x_scale, vectors[..., 1] * y_scale], dim=-1)


def masked_average_pool(features: torch.Tensor, masks: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Eq. 4: V_m = sum_p V(p) S_m(p) / sum_p S_m(p).

    features: (B, D, h, w) motion features V; masks: (B, c, h, w) -> (B, c, D).
    """
    masks = masks.to(features.dtype)
    total = torch.einsum("bchw,bdhw->bcd", masks, features)
    return total / (masks.sum(dim=(2, 3)).unsqueeze(-1) + eps)


def compose(segment_flow: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Eq. 6: F(p) = sum_m F_m S_m(p).  (B, c, 2) x (B, c, h, w) -> (B, 2, h, w), fp32."""
    with torch.autocast(masks.device.type, enabled=False):
        return torch.einsum("bck,bchw->bkhw", segment_flow.float(), masks.float())


class SegmentFlowHead(nn.Module):
    """Eq. 5: g, a 2-layer MLP (1x1 convs on pooled features) from V_m to a flow vector F_m."""

    def __init__(self, in_channels: int = 96, hidden: int = 64):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_channels, hidden), nn.LeakyReLU(0.1), nn.Linear(hidden, 2))

    def forward(self, features: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """features (B, D, h, w), masks (B, c, h, w) -> segment flow (B, c, 2) in pixels of this grid, fp32."""
        with torch.autocast(features.device.type, enabled=False):
            return self.mlp(masked_average_pool(features.float(), masks.float()))
