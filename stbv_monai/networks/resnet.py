"""ResNet / ResNeXt stages (ImageNet layout, torchvision-compatible parameter names), written here.

Only the stem and the first three stages are ever built: STCN's encoders stop at stride 16.
``width`` scales every stage (64 is the ImageNet size) so small models share the code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

__all__ = ["BasicBlock", "Bottleneck", "BackboneSpec", "BACKBONES", "make_stem", "make_stage", "stage_channels"]


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity (or projected) shortcut.

    Args:
        in_channels: input channels.
        planes: output channels (``expansion`` is 1).
        stride: stride of the first convolution.
        bias: give convolutions a bias (STCN's value encoder does, ImageNet ResNets do not).
        groups: must be 1 (grouped convolutions need a bottleneck).
        width_per_group: unused, kept for a common signature.
    """

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int = 1,
        bias: bool = False,
        groups: int = 1,
        width_per_group: int = 64,
    ) -> None:
        super().__init__()
        if groups != 1:
            raise ValueError("BasicBlock does not support grouped convolutions")
        self.conv1 = nn.Conv2d(in_channels, planes, 3, stride=stride, padding=1, bias=bias)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=bias)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_channels, planes, stride, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, H, W)`` -> ``(B, planes, H/stride, W/stride)``."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided, optionally grouped: ResNeXt) -> 1x1 bottleneck, ``expansion`` 4.

    Args:
        in_channels: input channels.
        planes: bottleneck planes; output channels are ``4 * planes``.
        stride: stride of the 3x3 convolution (ResNet v1.5, as torchvision).
        bias: give convolutions a bias.
        groups: groups of the 3x3 convolution (32 for ResNeXt-50 32x4d).
        width_per_group: channels per group at ``planes == 64`` (4 for ResNeXt-50 32x4d).
    """

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int = 1,
        bias: bool = False,
        groups: int = 1,
        width_per_group: int = 64,
    ) -> None:
        super().__init__()
        inner = int(planes * (width_per_group / 64.0)) * groups
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, inner, 1, bias=bias)
        self.bn1 = nn.BatchNorm2d(inner)
        self.conv2 = nn.Conv2d(inner, inner, 3, stride=stride, padding=1, groups=groups, bias=bias)
        self.bn2 = nn.BatchNorm2d(inner)
        self.conv3 = nn.Conv2d(inner, out_channels, 1, bias=bias)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_channels, out_channels, stride, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, H, W)`` -> ``(B, 4 * planes, H/stride, W/stride)``."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


def _shortcut(in_channels: int, out_channels: int, stride: int, bias: bool) -> nn.Sequential | None:
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=bias), nn.BatchNorm2d(out_channels)
    )


@dataclass(frozen=True)
class BackboneSpec:
    """Which block, how many blocks per stage (stages 1-3), and the grouped-convolution shape."""

    block: type[BasicBlock] | type[Bottleneck]
    layers: tuple[int, int, int]
    groups: int = 1
    width_per_group: int = 64


BACKBONES: dict[str, BackboneSpec] = {
    "resnet18": BackboneSpec(BasicBlock, (2, 2, 2)),
    "resnet50": BackboneSpec(Bottleneck, (3, 4, 6)),
    "resnext50": BackboneSpec(Bottleneck, (3, 4, 6), groups=32, width_per_group=4),
}


def make_stem(in_channels: int, width: int, bias: bool) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    """The 7x7 stride-2 convolution and its batch norm (ReLU and 3x3 max-pool follow in ``forward``)."""
    return nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=bias), nn.BatchNorm2d(width)


def make_stage(
    spec: BackboneSpec, in_channels: int, planes: int, blocks: int, stride: int, bias: bool
) -> nn.Sequential:
    """One ResNet stage of ``blocks`` blocks, the first one strided."""
    layers = []
    for i in range(blocks):
        layers.append(
            spec.block(in_channels, planes, stride if i == 0 else 1, bias, spec.groups, spec.width_per_group)
        )
        in_channels = planes * spec.block.expansion
    return nn.Sequential(*layers)


def stage_channels(spec: BackboneSpec, width: int) -> tuple[int, int, int]:
    """Output channels of stages 1, 2, 3 (strides 4, 8, 16) for a stem of ``width`` channels."""
    e = spec.block.expansion
    return width * e, 2 * width * e, 4 * width * e
