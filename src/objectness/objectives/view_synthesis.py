"""The view synthesis objective (docs/method.md#the-objective): rebuild each frame from the other."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import ConfigError, LossConfig, check_loss
from ..model.warp import backward_warp, non_occlusion_mask

SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2


def ssim_distance(x: torch.Tensor, y: torch.Tensor, padding: bool = True) -> torch.Tensor:
    """clamp((1 - SSIM) / 2, 0, 1) on 3x3 windows (average pooling), per pixel and channel.

    padding: reflect-pad so that the map keeps the (H, W) of x; without it, the
    map holds only the (H - 2, W - 2) windows inside the image (released code).
    """
    channels = x.shape[1]
    moments = torch.cat([x, y, x * x, y * y, x * y], dim=1)  # one pooling call for all five
    if padding:
        moments = F.pad(moments, (1, 1, 1, 1), mode="reflect")
    moments = F.avg_pool2d(moments, 3, 1)
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


def photometric_loss(target: torch.Tensor, reconstruction: torch.Tensor, visible: torch.Tensor, cfg: LossConfig):
    """Mean distance D over the visible pixels; visible: (B, 1, h, w) in {0, 1}."""
    if cfg.ssim == "padded":
        distance = photometric_distance(target, reconstruction, cfg)  # (B, 1, h, w)
        return (distance * visible).mean() / (visible.mean() + 1e-6)
    # "masked" (released code): occluded pixels are zeroed in both images
    # before SSIM, so no window reads what the flow cannot explain there.
    loss = cfg.l1_weight * ((target - reconstruction).abs() * visible).mean()
    if cfg.ssim_weight:
        loss = loss + cfg.ssim_weight * ssim_distance(target * visible, reconstruction * visible, padding=False).mean()
    return loss / (visible.mean() + 1e-6)


def view_synthesis_loss(frame1: torch.Tensor, frame2: torch.Tensor, out, cfg: LossConfig) -> tuple:
    """Eq. 8, both directions, over the pyramid of segment flows.

    frame1, frame2: (B, 3, H, W) in 0..1; out: AMDOutput. loss.grid picks the
    pyramid: "motion", the frames as f_M saw them and its flows at 1, 1/2, 1/4,
    ... of them (released code), or "image", these frames and the flows at 1,
    1/8, 1/16, ... Returns the scalar loss and a dict of detached terms for logging.
    """
    check_loss(cfg)
    if cfg.grid == "motion":
        frame1, frame2, flows12, flows21 = out.motion_frame1, out.motion_frame2, out.motion_flows12, out.motion_flows21
    else:
        flows12, flows21 = out.flows12, out.flows21
    if len(cfg.level_weights) > len(flows12):
        raise ConfigError(
            f"loss.level_weights has {len(cfg.level_weights)} entries but the motion pyramid "
            f"gives {len(flows12)} flow levels"
        )
    frame1, frame2 = frame1.float(), frame2.float()
    if cfg.occlusion == "shared":  # found once at full resolution, from the reverse flow's splat
        shared1 = non_occlusion_mask(flows21[0], cfg.occlusion_threshold)  # (B, 1, H, W)
        shared2 = non_occlusion_mask(flows12[0], cfg.occlusion_threshold)
    total = frame1.new_zeros(())
    terms = {}
    for level, (weight, flow12, flow21) in enumerate(zip(cfg.level_weights, flows12, flows21)):
        if weight == 0:
            continue
        flow12, flow21 = flow12.float(), flow21.float()
        size = flow12.shape[-2:]
        image1 = F.adaptive_avg_pool2d(frame1, size)  # area downsampling
        image2 = F.adaptive_avg_pool2d(frame2, size)
        if cfg.occlusion == "shared":
            visible1 = F.interpolate(shared1, size=size, mode="nearest")  # (B, 1, h, w)
            visible2 = F.interpolate(shared2, size=size, mode="nearest")
        else:
            visible1 = non_occlusion_mask(flow21, cfg.occlusion_threshold)
            visible2 = non_occlusion_mask(flow12, cfg.occlusion_threshold)
        loss1 = photometric_loss(image1, backward_warp(image2, flow12), visible1, cfg)
        loss2 = photometric_loss(image2, backward_warp(image1, flow21), visible2, cfg)
        level_loss = (loss1 + loss2) / 2
        total = total + weight * level_loss
        terms[f"photometric_{level}"] = level_loss.detach()
        if level == 0:
            terms["visible"] = ((visible1.mean() + visible2.mean()) / 2).detach()
    if cfg.smooth_weight:
        smooth = (smoothness(flows12[0].float(), frame1) + smoothness(flows21[0].float(), frame2)) / 2
        total = total + cfg.smooth_weight * smooth
        terms["smoothness"] = smooth.detach()
    return total, terms
