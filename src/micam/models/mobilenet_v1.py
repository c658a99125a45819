"""MobileNetV1 1.0/224 as TensorFlow defines it, with the key names of the Coral-converted checkpoint.

Thirteen depthwise-separable blocks; every conv has a bias (batch norm folded in) and is followed by
ReLU6; stride-2 convs pad like TensorFlow's "SAME" (one extra row/column at the bottom/right).
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

# (output channels, stride) of the 13 depthwise-separable blocks.
BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]


class SamePaddingConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding computed from the input size (asymmetric when odd)."""

    def forward(self, x: Tensor) -> Tensor:
        pads = []
        for size, kernel, stride in zip(x.shape[-2:], self.kernel_size, self.stride, strict=True):
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        if top == bottom and left == right:  # the convolution pads by itself: no padded copy of x
            return F.conv2d(x, self.weight, self.bias, self.stride, (top, left), self.dilation, self.groups)
        return F.conv2d(
            F.pad(x, (left, right, top, bottom)), self.weight, self.bias, self.stride, 0, self.dilation, self.groups
        )


class MobileNetV1(nn.Module):
    """features (stem + 13 blocks) -> global average pool -> 1x1 conv classifier -> (B, classes) logits."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Sequential(SamePaddingConv2d(3, 32, 3, stride=2), nn.ReLU6())]
        channels = 32
        for out_channels, stride in BLOCKS:
            layers.append(
                nn.Sequential(
                    SamePaddingConv2d(channels, channels, 3, stride=stride, groups=channels),
                    nn.ReLU6(),
                    nn.Conv2d(channels, out_channels, 1),
                    nn.ReLU6(),
                )
            )
            channels = out_channels
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.adaptive_avg_pool2d(self.features(x), 1)
        logits: Tensor = self.classifier(x)
        return logits.flatten(1)
