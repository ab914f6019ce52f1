"""Backward warping (eq. 7) and the occlusion test of the view synthesis loss (docs/method.md#the-objective)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def pixel_grid(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(1, 2, H, W) pixel coordinates, x first."""
    ys, xs = torch.meshgrid(
        torch.arange(height, device=device, dtype=dtype),
        torch.arange(width, device=device, dtype=dtype),
        indexing="ij",
    )
    return torch.stack([xs, ys]).unsqueeze(0)


def backward_warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """out(p) = image(p + flow(p)), bilinear, border padding.

    image: (B, C, H, W); flow: (B, 2, H, W) in pixels (x, y) on the output's grid.
    """
    _, _, h, w = flow.shape
    coords = pixel_grid(h, w, flow.device, flow.dtype) + flow  # (B, 2, H, W)
    # Python-scalar scales: no small tensor copied to the device at every call.
    grid = torch.stack([coords[:, 0] * (2 / max(w - 1, 1)) - 1, coords[:, 1] * (2 / max(h - 1, 1)) - 1], dim=-1)
    return F.grid_sample(image, grid.to(image.dtype), mode="bilinear", padding_mode="border", align_corners=True)


def resize_flow(flow: torch.Tensor, size: tuple) -> torch.Tensor:
    """(B, 2, h, w) -> (B, 2, H, W): bilinear with align_corners=True, as PWC-Lite
    upsamples flow, and the vectors rescaled to pixels of the new grid."""
    h, w = flow.shape[-2:]
    resized = F.interpolate(flow, size=size, mode="bilinear", align_corners=True)
    return torch.stack([resized[:, 0] * (size[1] / w), resized[:, 1] * (size[0] / h)], dim=1)


def range_map(flow: torch.Tensor) -> torch.Tensor:
    """How much of the other frame lands on each pixel: forward-splat ones along ``flow``.

    flow: (B, 2, H, W), the backward flow of the *other* frame (its pixel q lands
    on q + flow(q) here). Returns (B, 1, H, W); about 1 where pixels are covered
    once, near 0 where nothing lands (occluded or newly visible).
    """
    b, _, h, w = flow.shape
    coords = (pixel_grid(h, w, flow.device, flow.dtype) + flow).flatten(2)  # (B, 2, HW)
    x0, y0 = coords[:, 0].floor(), coords[:, 1].floor()
    fx, fy = coords[:, 0] - x0, coords[:, 1] - y0
    out = flow.new_zeros(b, h * w)
    for dx, dy, weight in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        x, y = x0 + dx, y0 + dy
        inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)  # False for a flow that is not finite
        index = torch.where(inside, y * w + x, 0).long()  # outside (or NaN): index 0, weight 0
        out.scatter_add_(1, index, torch.where(inside, weight, 0))
    return out.view(b, 1, h, w)


def non_occlusion_mask(flow_other: torch.Tensor, threshold: float = 0.2) -> torch.Tensor:
    """(B, 1, H, W) float: 1 where some pixel of the other frame maps here (range map > threshold)."""
    return (range_map(flow_other.detach().float()) > threshold).float()
