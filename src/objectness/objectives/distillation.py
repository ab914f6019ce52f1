"""Distillation: f_A learns the mean objectness map of trained models (not the paper's).

Runs of one recipe differ (MODEL_CARD.md: about 0.03 in held-out J between
two seeds), and the mean objectness map of several runs scores better than
any one of them. With ``loss.distill_weight`` > 0 the channel
``loss.distill_channel`` of the network being trained learns that mean map
(``distillation_loss``: binary cross-entropy against the soft map), beside the
rest of the objective: one network, the ensemble's masks, at the cost of one.
The teachers' maps come from training/teachers.py. With ``loss.paste_weight`` > 0
the channel also learns composites: each frame's object, as its teachers' map
outlines it, pasted at another scale and place onto another frame of the batch
(``paste_objects``). Off in the ``paper`` preset.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def paste_objects(images: torch.Tensor, objectness: torch.Tensor, scale_range=(0.7, 1.3),
                  generator=None) -> tuple:
    """Composites: each image's object pasted onto another image of the batch, moved at random.

    images: (B, 3, H, W) in 0..1; objectness: (B, H, W) in 0..1, their teachers'
    maps at the images' size; the object's alpha is 2 x map - 0.5, clipped to
    0..1 (a map's faint glow stays behind). Image k's object is scaled by
    U(scale_range), flipped left-right half the time, shifted by up to a quarter
    of each side, and laid with its alpha over image k - 1 (cyclically). Returns
    (composites (B, 3, H, W), their objectness (B, H, W)): the pasted object,
    and the background image's own objectness where the object leaves it seen.
    Not the paper's: it shows f_A objects away from the scenes they were filmed in.
    """
    composites, _, target = pasted_layers(images, objectness, scale_range, generator)
    return composites, target


def pasted_layers(images: torch.Tensor, objectness: torch.Tensor, scale_range=(0.7, 1.3),
                  generator=None) -> tuple:
    """``paste_objects`` with the pasted object's alpha: (composites (B, 3, H, W), alpha (B, H, W),
    their objectness (B, H, W)). The alpha is where the pasted object covers the background image
    (objectives/pasted_motion.py moves it against that background)."""
    b = images.shape[0]
    low, high = scale_range
    uniform = lambda *shape: torch.rand(*shape, generator=generator, device="cpu")  # noqa: E731
    scale = low + (high - low) * uniform(b)
    flip = torch.where(uniform(b) < 0.5, -1.0, 1.0)
    shift = (uniform(b, 2) - 0.5)  # in units of the half-side of the normalised grid: up to a quarter side
    # The grid reads, at each output point x, the source at (x - shift) / scale (mirrored by flip).
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = flip / scale
    theta[:, 1, 1] = 1 / scale
    theta[:, :, 2] = -shift / scale[:, None] * torch.stack([flip, torch.ones(b)], 1)
    grid = F.affine_grid(theta.to(images), list(images.shape), align_corners=False)
    source = torch.cat([images, objectness[:, None]], 1).float()
    moved = F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    alpha = (2 * moved[:, 3:] - 0.5).clamp(0, 1)  # faint glows (below 0.25) left behind, 0.75 and up opaque
    background, own = images.roll(1, 0).float(), objectness.roll(1, 0)[:, None].float()
    composites = alpha * moved[:, :3] + (1 - alpha) * background
    return composites.to(images.dtype), alpha[:, 0], (alpha + (1 - alpha) * own)[:, 0]


def distillation_loss(target: torch.Tensor, masks: torch.Tensor, channel: int,
                      weight: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross-entropy of the soft masks' channel ``channel`` against a soft target map.

    target: (B, h, w) in 0..1 on the masks' grid; masks: (B, c, h, w), softmax over c.
    weight: None (every pixel counts the same) or (B, h, w) >= 0, each pixel's share:
    the loss is then the weighted mean (0 where every weight is 0).
    """
    if not 0 <= channel < masks.shape[1]:
        raise ValueError(f"loss.distill_channel {channel} is not one of the {masks.shape[1]} mask channels")
    with torch.autocast(masks.device.type, enabled=False):
        prob = masks[:, channel].float().clamp(1e-6, 1 - 1e-6)
        if weight is None:
            return F.binary_cross_entropy(prob, target.float())
        weight = weight.float()
        bce = F.binary_cross_entropy(prob, target.float(), reduction="none")
        return (weight * bce).sum() / weight.sum().clamp_min(1e-6)


def confidence(target: torch.Tensor) -> torch.Tensor:
    """How far a soft target map is from undecided, |2 t - 1| in 0..1 (``loss.image_confidence``).

    0 where the target is 0.5 (its teachers disagree, or both are unsure), 1 where it is 0 or 1.
    """
    return (2 * target.float() - 1).abs()
