"""The motion pathway f_M: two frames -> motion features, and segment flow at every level.

PWC-Lite (ARFlow) as used by the released AMD: a shared feature pyramid, and
from the coarsest level to 1/4 a warp, a cost volume and a densely connected
estimator whose last features are the motion features V (docs/method.md#the-motion-network). In place
of a dense flow, each level predicts one residual flow vector per segment from
V pooled inside the masks (docs/method.md#segment-flow); the composed segment flow warps the next
level: upsampled x2 as PWC-Lite does (released code), or recomposed from the
segment vectors with the next level's masks (model.motion.warp_flow).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import MotionConfig
from .correlation import correlation
from .segment_flow import SegmentFlowHead, compose, resize_masks, scale_xy
from .warp import backward_warp, resize_flow

MOTION_FEATURES = 96  # 64 + 32: the last two estimator convolutions


def conv(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2), nn.LeakyReLU(0.1, inplace=True))


class FeaturePyramid(nn.Module):
    """Shared encoder: each level a stride-2 3x3 conv and a 3x3 conv; outputs 1/2 ... 1/2^L."""

    def __init__(self, channels: tuple):
        super().__init__()
        ins = (3,) + tuple(channels[:-1])
        self.levels = nn.ModuleList(nn.Sequential(conv(i, o, stride=2), conv(o, o)) for i, o in zip(ins, channels))

    def forward(self, x: torch.Tensor) -> list:
        features = []
        for level in self.levels:
            x = level(x)
            features.append(x)
        return features


class MotionEstimator(nn.Module):
    """PWC-Lite's dense estimator (convs 128, 128, 96, 64, 32 with skip concatenations)."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.conv1 = conv(in_channels, 128)
        self.conv2 = conv(128, 128)
        self.conv3 = conv(128 + 128, 96)
        self.conv4 = conv(128 + 96, 64)
        self.conv5 = conv(96 + 64, 32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """-> motion features V, (B, 96, h, w)."""
        x1 = self.conv1(x)
        x2 = self.conv2(x1)
        x3 = self.conv3(torch.cat([x1, x2], dim=1))
        x4 = self.conv4(torch.cat([x2, x3], dim=1))
        x5 = self.conv5(torch.cat([x3, x4], dim=1))
        return torch.cat([x4, x5], dim=1)


class MotionNet(nn.Module):
    """f_M with the segment flow head g, shared over levels."""

    def __init__(self, cfg: MotionConfig):
        super().__init__()
        channels = tuple(cfg.pyramid_channels)
        self.mask_resize, self.warp_flow = cfg.mask_resize, cfg.warp_flow
        self.search_range = cfg.search_range
        self.pyramid = FeaturePyramid(channels)
        # Flow is estimated from the coarsest level down to 1/4 (pyramid index 1).
        self.level_indices = list(range(len(channels) - 1, 0, -1))
        self.reduce = nn.ModuleList(conv(channels[i], 32, kernel=1) for i in self.level_indices)
        cost_channels = (2 * cfg.search_range + 1) ** 2
        self.estimator = MotionEstimator(cost_channels + 32 + 2)
        self.segment_head = SegmentFlowHead(MOTION_FEATURES)
        if cfg.init == "kaiming":
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.init.kaiming_normal_(m.weight, a=0.1, nonlinearity="leaky_relu")
                    nn.init.zeros_(m.bias)
            nn.init.zeros_(self.segment_head.mlp[-1].weight)  # segment flow starts at zero

    def forward(self, frame1: torch.Tensor, frame2: torch.Tensor, masks12: torch.Tensor, masks21: torch.Tensor) -> tuple:
        """Segment flow of both directions at every level, coarse to fine.

        frame1, frame2: (B, 3, H, W) in 0..1. masks12: (B, c, h, w), the masks
        that carry the flow rebuilding frame 1 from frame 2; masks21 the reverse.
        Returns, per direction (1->2, 2->1), a pair of lists, one entry per
        level from the coarsest to 1/4: the (B, c, 2) segment flows in pixels
        of the (H, W) input, and the (B, 2, h_l, w_l) flows composed from them
        with the level's masks (eq. 6), in pixels of the level.
        """
        b = frame1.shape[0]
        features = self.pyramid(torch.cat([frame1, frame2]))  # each (2B, C_l, h_l, w_l)
        # Both directions in one batch: targets (1, 2) sample (2, 1).
        targets = features
        sampled = [torch.cat([f[b:], f[:b]]) if i in self.level_indices else None for i, f in enumerate(features)]
        segment_flows, flows = self.decode(targets, sampled, torch.cat([masks12, masks21]), frame1.shape[-2:])
        first, second = slice(None, b), slice(b, None)
        return tuple(([s[half] for s in segment_flows], [f[half] for f in flows]) for half in (first, second))

    def decode(self, targets: list, sampled: list, masks: torch.Tensor, image_size: tuple) -> tuple:
        height, width = image_size
        segment_flow = masks.new_zeros(masks.shape[0], masks.shape[1], 2)  # (B, c, 2), input pixels
        segment_flows, flows = [], []
        for reduce, index in zip(self.reduce, self.level_indices):
            target, source = targets[index], sampled[index]
            h, w = target.shape[-2:]
            to_level = (w / width, h / height)  # input px -> level px, (x, y)
            level_masks = resize_masks(masks, (h, w), self.mask_resize)  # (B, c, h, w)
            if flows and self.warp_flow == "upsampled":
                flow = resize_flow(flows[-1], (h, w))  # (B, 2, h, w), the previous level's flow x2
            else:
                flow = compose(scale_xy(segment_flow, *to_level), level_masks)  # (B, 2, h, w), eq. 6
            if flows:
                source = backward_warp(source, flow)
            cost = F.leaky_relu(correlation(target, source, self.search_range), 0.1)
            motion_features = self.estimator(torch.cat([cost, reduce(target), flow.to(cost.dtype)], dim=1))
            residual = self.segment_head(motion_features, level_masks)  # (B, c, 2), eqs. 4-5
            segment_flow = segment_flow + scale_xy(residual.float(), 1 / to_level[0], 1 / to_level[1])
            segment_flows.append(segment_flow)
            flows.append(compose(scale_xy(segment_flow, *to_level), level_masks))  # (B, 2, h, w), eq. 6
        return segment_flows, flows
