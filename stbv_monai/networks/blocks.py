"""Small building blocks of the space-time memory network.

Attribute names (``conv1``, ``downsample``, ``ChannelGate.mlp``, ``SpatialGate.spatial.conv``,
``skip_conv``, ``out_conv``, ``key_proj``) are chosen so that the parameter names of official
STCN checkpoints load without renaming.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "ResBlock",
    "ChannelGate",
    "SpatialGate",
    "CBAM",
    "FeatureFusionBlock",
    "UpsampleBlock",
    "KeyProjection",
]


class ResBlock(nn.Module):
    """Pre-activation residual block of two 3x3 convolutions (with bias, no normalisation).

    Args:
        in_channels: input channels.
        out_channels: output channels; a 3x3 convolution projects the shortcut when it
            differs from ``in_channels``.
    """

    def __init__(self, in_channels: int, out_channels: int | None = None) -> None:
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        self.downsample = (
            None if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, H, W)`` -> ``(B, C_out, H, W)``."""
        residual = self.conv2(F.relu(self.conv1(F.relu(x))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return shortcut + residual


class ChannelGate(nn.Module):
    """CBAM channel attention: a shared MLP on the global average- and max-pooled features.

    Args:
        channels: feature channels.
        reduction: hidden width of the MLP is ``channels // reduction`` (at least 1).
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, C, H, W)``, each channel scaled by a gate in (0, 1)."""
        avg = self.mlp(F.adaptive_avg_pool2d(x, 1))
        peak = self.mlp(F.adaptive_max_pool2d(x, 1))
        return x * torch.sigmoid(avg + peak)[:, :, None, None]


class SpatialGate(nn.Module):
    """CBAM spatial attention: a 7x7 convolution on the channel-wise max and mean maps."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        conv = nn.Conv2d(2, 1, kernel_size=kernel_size, padding=(kernel_size - 1) // 2)
        self.spatial = nn.Sequential(OrderedDict(conv=conv))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, C, H, W)``, each position scaled by a gate in (0, 1)."""
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.spatial(pooled))


class CBAM(nn.Module):
    """Convolutional block attention (Woo et al., 2018): channel gate then spatial gate.

    Args:
        channels: feature channels.
        reduction: channel-gate MLP reduction ratio.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        # Capitalised attribute names keep STCN's checkpoint keys.
        self.ChannelGate = ChannelGate(channels, reduction)
        self.SpatialGate = SpatialGate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, C, H, W)``."""
        return self.SpatialGate(self.ChannelGate(x))


class FeatureFusionBlock(nn.Module):
    """Fuse the value-encoder features with the key encoder's stride-16 features.

    ``ResBlock -> CBAM (added as a residual) -> ResBlock`` on the channel concatenation.

    Args:
        in_channels: value channels + key-feature channels.
        out_channels: value (memory) channels.
        reduction: CBAM reduction ratio.
    """

    def __init__(self, in_channels: int, out_channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.block1 = ResBlock(in_channels, out_channels)
        self.attention = CBAM(out_channels, reduction)
        self.block2 = ResBlock(out_channels, out_channels)

    def forward(self, x: torch.Tensor, key_f16: torch.Tensor) -> torch.Tensor:
        """``(B, Cv, h, w)`` and ``(B, Ck16, h, w)`` -> ``(B, C_out, h, w)``."""
        x = self.block1(torch.cat([x, key_f16], dim=1))
        return self.block2(x + self.attention(x))


class UpsampleBlock(nn.Module):
    """Decoder stage: project the skip features, add the x2 upsampled coarse features, ResBlock.

    Args:
        skip_channels: channels of the finer skip features.
        up_channels: channels of the coarse features (and of the projected skip).
        out_channels: output channels.
    """

    def __init__(self, skip_channels: int, up_channels: int, out_channels: int) -> None:
        super().__init__()
        self.skip_conv = nn.Conv2d(skip_channels, up_channels, kernel_size=3, padding=1)
        self.out_conv = ResBlock(up_channels, out_channels)

    def forward(self, skip: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """``(B, Cs, 2h, 2w)`` and ``(B, Cu, h, w)`` -> ``(B, C_out, 2h, 2w)``."""
        up = F.interpolate(coarse, scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.out_conv(self.skip_conv(skip) + up)


class KeyProjection(nn.Module):
    """3x3 convolution from stride-16 features to the key space, orthogonally initialised.

    Args:
        in_channels: channels of the key encoder's stride-16 features.
        key_dim: key channels ``Ck``.
    """

    def __init__(self, in_channels: int, key_dim: int) -> None:
        super().__init__()
        self.key_proj = nn.Conv2d(in_channels, key_dim, kernel_size=3, padding=1)
        nn.init.orthogonal_(self.key_proj.weight)
        nn.init.zeros_(self.key_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C16, h, w)`` -> keys ``(B, Ck, h, w)``."""
        return self.key_proj(x)
