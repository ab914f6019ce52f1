"""AMD: the appearance and motion pathways bound by segment flow (docs/method.md#the-model)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig, check_model
from .appearance import AppearanceNet
from .motion import MotionNet
from .segment_flow import compose, resize_masks, scale_xy
from .warp import resize_flow


@dataclass
class AMDOutput:
    masks1: torch.Tensor  # (B, c, H/8, W/8) soft masks S of frame 1
    masks2: torch.Tensor  # (B, c, H/8, W/8) soft masks S of frame 2
    flows12: list  # (B, 2, h, w) segment flow that rebuilds frame 1 by sampling frame 2; full size, 1/8, 1/16, ...
    flows21: list  # the same for frame 2 from frame 1
    segment_flow12: torch.Tensor  # (B, c, 2) one vector F_m per segment, pixels of the full-size frame
    segment_flow21: torch.Tensor
    # The motion grid, where the released code's loss compares images:
    motion_frame1: torch.Tensor  # (B, 3, Hm, Wm) frame 1 resized for f_M (model.motion.input_size)
    motion_frame2: torch.Tensor
    motion_flows12: list  # (B, 2, Hm/2^k, Wm/2^k), k = 0, 1, ...: each level's composed flow upsampled x4
    motion_flows21: list


class AMD(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        check_model(cfg)
        self.cfg = cfg
        self.appearance = AppearanceNet(cfg.appearance, cfg.num_segments)
        self.motion = MotionNet(cfg.motion)

    def forward(self, frame1: torch.Tensor, frame2: torch.Tensor) -> AMDOutput:
        """frame1, frame2: (B, 3, H, W) in 0..1."""
        b = frame1.shape[0]
        masks = self.appearance(torch.cat([frame1, frame2]))  # (2B, c, H/8, W/8)
        masks1, masks2 = masks[:b], masks[b:]
        # Eq. 7: to rebuild frame i by sampling frame j, the segment flow is
        # built from the masks of the sampled frame j (released code), or of i.
        if self.cfg.motion.mask_source == "sampled":
            masks12, masks21 = masks2, masks1
        else:
            masks12, masks21 = masks1, masks2
        motion_size = tuple(self.cfg.motion.input_size or frame1.shape[-2:])
        motion_frames = torch.cat([frame1, frame2])
        if motion_size != tuple(frame1.shape[-2:]):
            motion_frames = F.interpolate(motion_frames, size=motion_size, mode="bilinear",
                                          align_corners=self.cfg.motion.align_corners)
        (levels12, level_flows12), (levels21, level_flows21) = self.motion(
            motion_frames[:b], motion_frames[b:], masks12, masks21)
        image_size, mask_resize = tuple(frame1.shape[-2:]), self.cfg.motion.mask_resize
        flows12, segment_flow12 = flow_pyramid(levels12, masks12, image_size, motion_size, mask_resize)
        flows21, segment_flow21 = flow_pyramid(levels21, masks21, image_size, motion_size, mask_resize)
        return AMDOutput(masks1, masks2, flows12, flows21, segment_flow12, segment_flow21,
                         motion_frames[:b], motion_frames[b:],
                         motion_grid_flows(level_flows12, motion_size), motion_grid_flows(level_flows21, motion_size))


def motion_grid_flows(level_flows: list, motion_size: tuple) -> list:
    """PWC-Lite's outputs: the composed flow of each level, coarse to 1/4, upsampled x4
    (values x4) onto the motion input's grid -> full size, 1/2, 1/4, ... of it."""
    height, width = motion_size
    sizes = [(max(height // 2**k, 1), max(width // 2**k, 1)) for k in range(len(level_flows))]
    return [resize_flow(flow, size) for flow, size in zip(reversed(level_flows), sizes)]


def flow_pyramid(levels: list, masks: torch.Tensor, image_size: tuple, motion_size: tuple,
                 mask_resize: str = "area") -> tuple:
    """Compose the segment flow of each level on the image grid: full size, then 1/8, 1/16, ...

    levels: (B, c, 2) segment flows in pixels of the motion input, coarse to 1/4.
    The 1/4 level gives the full-size flow (as PWC-Lite upsamples x4); each
    coarser level k gives the flow at 1/2^(k+2) of the image.
    """
    height, width = image_size
    flows = []
    for k, segment_flow in enumerate(reversed(levels)):
        factor = 1 if k == 0 else 2 ** (k + 2)
        h, w = max(height // factor, 1), max(width // factor, 1)
        scaled = scale_xy(segment_flow, w / motion_size[1], h / motion_size[0])  # (B, c, 2), level pixels
        flows.append(compose(scaled, resize_masks(masks, (h, w), mask_resize)))  # (B, 2, h, w), eq. 6
        if k == 0:
            full_size = scaled
    return flows, full_size
