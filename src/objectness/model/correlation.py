"""Cost volume of the motion pathway (docs/method.md#the-motion-network), in plain PyTorch.

For every pixel p and displacement d with |d_x|, |d_y| <= r, the mean over
channels of f1(p) * f2(p + d); f2 is zero outside the image. The released code
needs a CUDA extension for this; here it is (2r+1)^2 shifted products.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def correlation(f1: torch.Tensor, f2: torch.Tensor, search_range: int = 4) -> torch.Tensor:
    """(B, C, H, W) x2 -> (B, (2r+1)^2, H, W); channel index = (d_y + r) * (2r+1) + (d_x + r)."""
    r = search_range
    _, _, h, w = f1.shape
    f2 = F.pad(f2, (r, r, r, r))
    volume = [
        (f1 * f2[:, :, dy:dy + h, dx:dx + w]).mean(dim=1)
        for dy in range(2 * r + 1)
        for dx in range(2 * r + 1)
    ]
    return torch.stack(volume, dim=1)
