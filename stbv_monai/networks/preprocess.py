"""Input conventions of the network: ImageNet normalisation and padding to a multiple of 16.

Grayscale ultrasound frames in [0, 1] become network input by repeating the one channel
three times (an RGB image of equal channels) and normalising each channel with the
ImageNet mean ``(0.485, 0.456, 0.406)`` and standard deviation ``(0.229, 0.224, 0.225)``,
as the ImageNet-pretrained encoders expect. RGB frames are normalised as they are.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "normalize_frames", "pad_to_multiple", "unpad", "STRIDE"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
STRIDE = 16


def normalize_frames(frames: torch.Tensor) -> torch.Tensor:
    """Grayscale or RGB frames in [0, 1] -> ImageNet-normalised 3-channel frames.

    Args:
        frames: ``(..., C, H, W)`` with ``C`` 1 (repeated x3) or 3.

    Returns:
        ``(..., 3, H, W)`` in the input's floating dtype (float32 for integer input).
    """
    channels = frames.shape[-3]
    if channels not in (1, 3):
        raise ValueError(f"frames need 1 (grayscale) or 3 (RGB) channels in dim -3, got shape {list(frames.shape)}")
    if not frames.is_floating_point():
        frames = frames.float()
    if channels == 1:
        frames = torch.cat([frames, frames, frames], dim=-3)
    # IMAGENET_MEAN / IMAGENET_STD, written out so that TorchScript can compile this function.
    mean = torch.tensor([0.485, 0.456, 0.406], dtype=frames.dtype, device=frames.device).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], dtype=frames.dtype, device=frames.device).view(3, 1, 1)
    return (frames - mean) / std


def pad_to_multiple(x: torch.Tensor, multiple: int = STRIDE) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Zero-pad the last two dimensions up to a multiple of ``multiple``, split as STCN does.

    The extra rows (columns) go ``floor(extra / 2)`` before and the rest after. Pad
    ImageNet-normalised frames, so the padding is the mean intensity, and masks (zeros).

    Args:
        x: ``(..., H, W)``.
        multiple: the size multiple (16: the network's output stride).

    Returns:
        the padded tensor ``(..., H', W')`` and ``(left, right, top, bottom)`` for :func:`unpad`.
    """
    h, w = int(x.shape[-2]), int(x.shape[-1])
    extra_h = (multiple - h % multiple) % multiple
    extra_w = (multiple - w % multiple) % multiple
    pad = (extra_w // 2, extra_w - extra_w // 2, extra_h // 2, extra_h - extra_h // 2)
    if extra_h == 0 and extra_w == 0:
        return x, pad
    return F.pad(x, pad), pad


def unpad(x: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    """Undo :func:`pad_to_multiple` on the last two dimensions."""
    left, right, top, bottom = pad
    h, w = int(x.shape[-2]), int(x.shape[-1])
    return x[..., top : h - bottom, left : w - right]
