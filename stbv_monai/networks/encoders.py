"""Key encoder (query/memory frames) and value encoder (frame + mask) of the memory network."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from stbv_monai.networks.blocks import FeatureFusionBlock
from stbv_monai.networks.resnet import BACKBONES, make_stage, make_stem, stage_channels

__all__ = ["KeyEncoder", "ValueEncoder"]


class KeyEncoder(nn.Module):
    """ImageNet-style backbone up to stage 3, returning features at strides 16, 8 and 4.

    Stage 1 is stored as ``res2`` (STCN's name); convolutions have no bias, so
    torchvision ImageNet weights map onto it one to one.

    Args:
        backbone: ``"resnet50"`` (STCN), ``"resnext50"`` (ResNeXt-50 32x4d) or ``"resnet18"``.
        width: stem width; 64 is the ImageNet size, smaller values give narrower models.
        in_channels: image channels (3: ImageNet-normalised RGB or repeated grayscale).
    """

    def __init__(self, backbone: str = "resnet50", width: int = 64, in_channels: int = 3) -> None:
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"unknown key backbone {backbone!r}; choose one of {sorted(BACKBONES)}")
        spec = BACKBONES[backbone]
        self.conv1, self.bn1 = make_stem(in_channels, width, bias=False)
        self.relu = nn.ReLU(inplace=True)
        c4, c8, c16 = stage_channels(spec, width)
        self.res2 = make_stage(spec, width, width, spec.layers[0], 1, bias=False)
        self.layer2 = make_stage(spec, c4, 2 * width, spec.layers[1], 2, bias=False)
        self.layer3 = make_stage(spec, c8, 4 * width, spec.layers[2], 2, bias=False)
        self.channels = {"f16": c16, "f8": c8, "f4": c4}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode images.

        Args:
            x: ``(N, 3, H, W)`` normalised images, ``H`` and ``W`` multiples of 16.

        Returns:
            ``f16 (N, C16, H/16, W/16)``, ``f8 (N, C8, H/8, W/8)``, ``f4 (N, C4, H/4, W/4)``.
        """
        x = self.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
        f4 = self.res2(x)
        f8 = self.layer2(f4)
        f16 = self.layer3(f8)
        return f16, f8, f4


class ValueEncoder(nn.Module):
    """ResNet-18 (biased convolutions) on image + mask channels, fused with the key features.

    The first convolution sees ``3 + mask_channels`` channels: the normalised image, the
    object's mask and (``mask_channels == 2``) the union of the other objects' masks.

    Args:
        key_channels: channels of the key encoder's stride-16 features.
        value_dim: output (memory value) channels ``Cv``.
        width: stem width of the ResNet-18 (64 in STCN).
        mask_channels: 2 (mask + other-objects mask, STCN) or 1 (mask only).
        reduction: CBAM reduction ratio in the fusion block.
    """

    def __init__(
        self, key_channels: int, value_dim: int = 512, width: int = 64, mask_channels: int = 2, reduction: int = 16
    ) -> None:
        super().__init__()
        if mask_channels not in (1, 2):
            raise ValueError(f"mask_channels must be 1 or 2, got {mask_channels}")
        spec = BACKBONES["resnet18"]
        self.mask_channels = mask_channels
        self.conv1, self.bn1 = make_stem(3 + mask_channels, width, bias=True)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = make_stage(spec, width, width, spec.layers[0], 1, bias=True)
        self.layer2 = make_stage(spec, width, 2 * width, spec.layers[1], 2, bias=True)
        self.layer3 = make_stage(spec, 2 * width, 4 * width, spec.layers[2], 2, bias=True)
        self.fuser = FeatureFusionBlock(4 * width + key_channels, value_dim, reduction)

    def forward(
        self, image: torch.Tensor, key_f16: torch.Tensor, mask: torch.Tensor, other_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Encode a frame and its mask into a memory value.

        Args:
            image: ``(N, 3, H, W)`` normalised images.
            key_f16: ``(N, C16, H/16, W/16)`` key-encoder features of the same images.
            mask: ``(N, 1, H, W)`` object probability in [0, 1].
            other_mask: ``(N, 1, H, W)`` other objects' probability; zeros when ``None``.

        Returns:
            ``(N, Cv, H/16, W/16)`` values.
        """
        channels = [image, mask]
        if self.mask_channels == 2:
            channels.append(torch.zeros_like(mask) if other_mask is None else other_mask)
        x = self.relu(self.bn1(self.conv1(torch.cat(channels, dim=1))))
        x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fuser(x, key_f16)
