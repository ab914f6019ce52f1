"""The appearance pathway f_A: one image -> c soft masks (docs/method.md#the-appearance-network).

A ResNet trained from scratch at output stride 8, followed by an FCN head and a
softmax over the c segments. The residual blocks are torchvision's; only the
stage layout (strides, dilations, width) is ours, because torchvision cannot
dilate its basic blocks or narrow its stem.
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from ..config import AppearanceConfig, check_appearance

IMAGENET_MEAN = (123.675, 116.28, 103.53)  # on 0..255 RGB
IMAGENET_STD = (58.395, 57.12, 57.375)

BLOCKS = {18: (BasicBlock, (2, 2, 2, 2)), 34: (BasicBlock, (3, 4, 6, 3)), 50: (Bottleneck, (3, 4, 6, 3))}
# Stage strides and dilations after the stem (released code: output stride 8).
STAGES = {8: ((1, 2, 1, 1), (1, 1, 1, 2)), 16: ((1, 2, 2, 1), (1, 1, 1, 2)), 32: ((1, 2, 2, 2), (1, 1, 1, 1))}


class ResNet(nn.Module):
    """ResNet-18/34/50 backbone without the classifier, any width, output stride 8/16/32."""

    def __init__(self, depth: int = 50, width: int = 64, output_stride: int = 8, zero_init_residual: bool = True):
        super().__init__()
        block, counts = BLOCKS[depth]
        strides, dilations = STAGES[output_stride]
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        self.in_channels = width
        self.stages = nn.Sequential(*(
            self._stage(block, width * 2**i, n, s, d)
            for i, (n, s, d) in enumerate(zip(counts, strides, dilations))
        ))
        self.out_channels = self.in_channels
        self._init_weights(zero_init_residual)

    def _stage(self, block, planes: int, count: int, stride: int, dilation: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.in_channels != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.in_channels, planes * block.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.in_channels, planes, stride, downsample)]
        self.in_channels = planes * block.expansion
        layers += [block(self.in_channels, planes) for _ in range(count - 1)]
        if dilation > 1:
            for layer in layers:
                _dilate(layer, dilation)
        return nn.Sequential(*layers)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:  # each residual branch starts as the identity
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))


def _dilate(block: nn.Module, dilation: int) -> None:
    """Turn a block's 3x3 convolutions into dilated ones (same parameters)."""
    for conv in block.modules():
        if isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3):
            conv.dilation = (dilation, dilation)
            conv.padding = (dilation, dilation)


class FCNHead(nn.Module):
    """Two dilated 3x3 conv blocks, dropout, and a 1x1 conv to c mask logits."""

    def __init__(self, in_channels: int, num_segments: int, channels: int = 256, dilation: int = 6, dropout: float = 0.1):
        super().__init__()

        def block(cin):
            return [nn.Conv2d(cin, channels, 3, padding=dilation, dilation=dilation, bias=False),
                    nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]

        self.convs = nn.Sequential(*block(in_channels), *block(channels))
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_segments, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.convs(x)))


class AppearanceNet(nn.Module):
    """f_A: images in 0..1 -> soft masks S, softmax over c channels at 1/output_stride."""

    def __init__(self, cfg: AppearanceConfig, num_segments: int):
        super().__init__()
        check_appearance(cfg)
        self.backbone = ResNet(cfg.depth, cfg.width, cfg.output_stride, cfg.zero_init_residual)
        self.head = FCNHead(self.backbone.out_channels, num_segments, cfg.head_channels, cfg.head_dilation, cfg.dropout)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) / 255, persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) / 255, persistent=False)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in 0..1 -> (B, c, H/8, W/8) mask logits."""
        return self.head(self.backbone((images - self.mean) / self.std))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in 0..1 -> (B, c, H/8, W/8) masks S; sum over c is 1 at every pixel."""
        return self.logits(images).float().softmax(dim=1)
