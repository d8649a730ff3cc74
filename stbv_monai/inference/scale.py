"""Run the network at the resolution it was trained at, whatever the video's size.

Training resizes every frame to ``spatial_size`` ``(H', W')``: a random crop of 80–100 % of each
side, resized per axis (so a non-square video is squashed, not letter-boxed). Inference follows
the same rule on the whole frame: frames and reference masks are resized per axis to ``(H', W')``
(anti-aliased bilinear, MONAI ``Resize``), the network runs there, and the probabilities are
resized back bilinearly to the native ``(H, W)`` before anyone thresholds them. A 640x480 video and
a network trained at 128x128 therefore see lesions at the scale of training, not 5x larger.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from monai.transforms import Resize

from stbv_monai.errors import InputError

__all__ = ["resize_frames", "resize_references", "resolve_size"]


def resolve_size(size: Sequence[int] | None, native: Sequence[int]) -> tuple[int, int] | None:
    """``size`` as ``(H', W')``, or ``None`` when it is unknown or equal to ``native`` (no resizing)."""
    if size is None:
        return None
    out = (int(size[0]), int(size[1]))
    if min(out) <= 0:
        raise InputError("size", f"a network resolution must be two positive integers, got {list(size)}")
    return None if out == (int(native[0]), int(native[1])) else out


def resize_frames(frames: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``(T, H, W)`` -> ``(T, H', W')`` float32, anti-aliased bilinear when shrinking (as in training)."""
    resize = Resize(tuple(int(s) for s in size), mode="bilinear", anti_aliasing=True, dtype=torch.float32)
    return torch.as_tensor(resize(frames.float())).clamp(0.0, 1.0)


def resize_references(references: Mapping[int, torch.Tensor], size: Sequence[int]) -> dict[int, torch.Tensor]:
    """Reference masks resized like frames: a soft mask keeps a lesion smaller than a network pixel."""
    if not references:
        return {}
    keys = list(references)
    stacked = resize_frames(torch.stack([references[t].float() for t in keys]), size)
    return dict(zip(keys, stacked))
