"""The forward pass of f_A at test time: masks and objectness maps (docs/method.md#saliency)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..model.segment_flow import resize_masks


@torch.no_grad()
def predict_masks(model, images: torch.Tensor, batch_size: int = 16, size=None) -> torch.Tensor:
    """Soft masks of every channel at the images' own size.

    model: an AMD (or anything with ``.appearance``); images: (N, 3, H, W) in
    0..1 on any device; size: (h, w) to run the network at (default: the
    images' size). Returns (N, c, H, W) on the CPU; sum over c is 1.
    """
    appearance = model.appearance
    was_training = appearance.training
    appearance.eval()
    device = next(appearance.parameters()).device
    outputs = []
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size].to(device)
        resized = batch if size is None else F.interpolate(batch, size=size, mode="bilinear", align_corners=False, antialias=True)
        outputs.append(resize_masks(appearance(resized), batch.shape[-2:]).cpu())  # (b, c, H, W)
    appearance.train(was_training)
    return torch.cat(outputs)


def mean_objectness(appearance, images: torch.Tensor, channel: int, sizes, out_size) -> torch.Tensor:
    """(B, h, w): f_A's objectness channel on ``images`` (B, 3, H, W) in 0..1, run at each
    of ``sizes`` ((H', W') each), resized to ``out_size`` and averaged: multi-scale testing."""
    total = 0
    for size in sizes:
        x = images
        if tuple(size) != tuple(images.shape[-2:]):
            x = F.interpolate(images, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
        masks = appearance(x)[:, channel:channel + 1].float()  # (B, 1, h', w')
        total = total + F.interpolate(masks, size=tuple(out_size), mode="bilinear", align_corners=False)[:, 0]
    return total / len(sizes)


def frames_to_tensor(frames) -> torch.Tensor:
    """uint8 (N, H, W, 3) array -> float (N, 3, H, W) in 0..1."""
    return torch.as_tensor(frames).permute(0, 3, 1, 2).float() / 255
