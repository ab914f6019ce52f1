"""The view synthesis objective (SPEC 1.4): rebuild each frame from the other."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .config import ConfigError, LossConfig
from .warp import backward_warp, non_occlusion_mask

SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2


def ssim_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """clamp((1 - SSIM) / 2, 0, 1) on 3x3 windows (average pooling), per pixel and channel."""
    channels = x.shape[1]
    moments = torch.cat([x, y, x * x, y * y, x * y], dim=1)  # one pooling call for all five
    moments = F.avg_pool2d(F.pad(moments, (1, 1, 1, 1), mode="reflect"), 3, 1)
    mu_x, mu_y, xx, yy, xy = moments.split(channels, dim=1)
    var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    ssim = ((2 * mu_x * mu_y + SSIM_C1) * (2 * cov + SSIM_C2)) / ((mu_x**2 + mu_y**2 + SSIM_C1) * (var_x + var_y + SSIM_C2))
    return ((1 - ssim) / 2).clamp(0, 1)


def photometric_distance(image: torch.Tensor, reconstruction: torch.Tensor, cfg: LossConfig) -> torch.Tensor:
    """D = w_l1 * L1 + w_ssim * SSIM distance, averaged over colour channels: (B, 1, H, W)."""
    distance = cfg.l1_weight * (image - reconstruction).abs()
    if cfg.ssim_weight:
        distance = distance + cfg.ssim_weight * ssim_distance(image, reconstruction)
    return distance.mean(dim=1, keepdim=True)


def smoothness(flow: torch.Tensor, image: torch.Tensor, edge_weight: float = 10.0) -> torch.Tensor:
    """First-order edge-aware smoothness of a flow field (an option; 0 in the paper's recipe)."""
    loss = 0
    for dim in (2, 3):
        grad_flow = flow.diff(dim=dim).abs().mean(1, keepdim=True)
        grad_image = image.diff(dim=dim).abs().mean(1, keepdim=True)
        loss = loss + (grad_flow * torch.exp(-edge_weight * grad_image)).mean()
    return loss / 2


def reconstruction_loss(target, source, flow, flow_back, cfg: LossConfig) -> tuple:
    """Rebuild ``target`` by sampling ``source`` along ``flow``; occluded pixels left out.

    flow_back: the reverse flow, whose forward splat tells which target pixels
    some source pixel lands on. Returns the masked mean distance and the mask.
    """
    visible = non_occlusion_mask(flow_back, cfg.occlusion_threshold)  # (B, 1, h, w)
    distance = photometric_distance(target, backward_warp(source, flow), cfg)
    return (distance * visible).mean() / (visible.mean() + 1e-6), visible


def view_synthesis_loss(frame1: torch.Tensor, frame2: torch.Tensor, out, cfg: LossConfig) -> tuple:
    """Eq. 8, both directions, over the pyramid of segment flows.

    frame1, frame2: (B, 3, H, W) in 0..1; out: AMDOutput. Returns the scalar
    loss and a dict of detached terms for logging.
    """
    if len(cfg.level_weights) > len(out.flows12):
        raise ConfigError(
            f"loss.level_weights has {len(cfg.level_weights)} entries but the motion pyramid "
            f"gives {len(out.flows12)} flow levels"
        )
    frame1, frame2 = frame1.float(), frame2.float()
    total = frame1.new_zeros(())
    terms = {}
    for level, (weight, flow12, flow21) in enumerate(zip(cfg.level_weights, out.flows12, out.flows21)):
        if weight == 0:
            continue
        flow12, flow21 = flow12.float(), flow21.float()
        size = flow12.shape[-2:]
        image1 = F.adaptive_avg_pool2d(frame1, size)  # area downsampling
        image2 = F.adaptive_avg_pool2d(frame2, size)
        loss1, visible1 = reconstruction_loss(image1, image2, flow12, flow21, cfg)
        loss2, visible2 = reconstruction_loss(image2, image1, flow21, flow12, cfg)
        level_loss = (loss1 + loss2) / 2
        total = total + weight * level_loss
        terms[f"photometric_{level}"] = level_loss.detach()
        if level == 0:
            terms["visible"] = ((visible1.mean() + visible2.mean()) / 2).detach()
    if cfg.smooth_weight:
        smooth = (smoothness(out.flows12[0].float(), frame1) + smoothness(out.flows21[0].float(), frame2)) / 2
        total = total + cfg.smooth_weight * smooth
        terms["smoothness"] = smooth.detach()
    return total, terms
