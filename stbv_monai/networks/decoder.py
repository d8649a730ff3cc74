"""Mask decoder: memory readout + query features at stride 16, refined with stride-8/4 skips."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from stbv_monai.networks.blocks import ResBlock, UpsampleBlock

__all__ = ["Decoder"]


class Decoder(nn.Module):
    """``compress`` (ResBlock) -> ``up_16_8`` -> ``up_8_4`` -> ``pred`` (3x3 conv) -> x4 bilinear.

    Args:
        in_channels: channels of the stride-16 input (readout + compressed query features).
        f8_channels: channels of the key encoder's stride-8 features.
        f4_channels: channels of the key encoder's stride-4 features.
        dims: output channels of ``compress``, ``up_16_8`` and ``up_8_4`` (STCN: 512, 256, 256).
    """

    def __init__(
        self, in_channels: int, f8_channels: int, f4_channels: int, dims: Sequence[int] = (512, 256, 256)
    ) -> None:
        super().__init__()
        d16, d8, d4 = (int(d) for d in dims)
        self.compress = ResBlock(in_channels, d16)
        self.up_16_8 = UpsampleBlock(f8_channels, d16, d8)
        self.up_8_4 = UpsampleBlock(f4_channels, d8, d4)
        self.pred = nn.Conv2d(d4, 1, kernel_size=3, padding=1)

    def forward(self, x16: torch.Tensor, f8: torch.Tensor, f4: torch.Tensor) -> torch.Tensor:
        """Decode.

        Args:
            x16: ``(B, C_in, h, w)`` stride-16 features.
            f8: ``(B, C8, 2h, 2w)`` stride-8 skip features.
            f4: ``(B, C4, 4h, 4w)`` stride-4 skip features.

        Returns:
            ``(B, 1, 16h, 16w)`` raw object logits.
        """
        x = self.compress(x16)
        x = self.up_16_8(f8, x)
        x = self.up_8_4(f4, x)
        x = self.pred(F.relu(x))
        return F.interpolate(x, scale_factor=4.0, mode="bilinear", align_corners=False)
