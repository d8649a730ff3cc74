"""Validation of what users hand to the inference core: one clear :class:`InputError` each."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from stbv_monai.errors import InputError

__all__ = ["check_frames", "check_references", "check_settings", "RANGE_TOLERANCE"]

RANGE_TOLERANCE = 0.01  # resampling may overshoot [0, 1] slightly


def check_frames(frames: Any) -> torch.Tensor:
    """``(T, H, W)`` floating frames, finite, in [0, 1] (a numpy array becomes a CPU tensor)."""
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(frames)
    if not isinstance(frames, torch.Tensor):
        raise InputError("frames", f"expected a (T, H, W) tensor, got {type(frames).__name__}")
    if frames.dim() != 3 or min(frames.shape) < 1:
        raise InputError("frames", f"expected a grayscale video (T, H, W), got shape {tuple(frames.shape)}")
    if not frames.is_floating_point():
        raise InputError("frames", f"expected floating-point intensities in [0, 1], got dtype {frames.dtype}")
    finite = torch.isfinite(frames).flatten(1).all(dim=1)
    if not bool(finite.all()):
        bad = torch.nonzero(~finite).flatten()[:5].tolist()
        raise InputError("frames", f"contains NaN or infinite values (frames {bad})")
    low, high = float(frames.min()), float(frames.max())
    if low < -RANGE_TOLERANCE or high > 1.0 + RANGE_TOLERANCE:
        raise InputError(
            "frames", f"intensities must lie in [0, 1], found [{low:.4g}, {high:.4g}] (scale 8-bit videos by 1/255)"
        )
    return frames


def check_references(references: Any, frames: torch.Tensor) -> dict[int, torch.Tensor]:
    """``{frame index: (H, W) float32 mask on the frames' device}``, checked against ``frames``."""
    if not isinstance(references, Mapping) or len(references) == 0:
        raise InputError(
            "references", "no reference frame given: pass at least one {frame index: (H, W) mask}"
        )
    num_frames, h, w = frames.shape
    out: dict[int, torch.Tensor] = {}
    for index, mask in references.items():
        t = _frame_index(index, num_frames)
        out[t] = _reference_mask(mask, t, (h, w), frames.device)
    return dict(sorted(out.items()))


def _frame_index(index: Any, num_frames: int) -> int:
    if isinstance(index, torch.Tensor) and index.numel() == 1:
        index = index.item()
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
        raise InputError("references", f"frame index {index!r} is not an integer")
    if not 0 <= int(index) < num_frames:
        raise InputError(
            "references", f"reference frame index {int(index)} is out of range for a video of {num_frames} frames"
        )
    return int(index)


def _reference_mask(mask: Any, t: int, size: tuple[int, int], device: torch.device) -> torch.Tensor:
    source = f"references[{t}]"
    if isinstance(mask, np.ndarray):
        mask = torch.from_numpy(mask)
    if not isinstance(mask, torch.Tensor):
        raise InputError(source, f"expected an (H, W) mask tensor, got {type(mask).__name__}")
    while mask.dim() > 2 and mask.shape[0] == 1:
        mask = mask[0]
    if tuple(mask.shape) != tuple(size):
        raise InputError(source, f"mask has shape {tuple(mask.shape)} but the frames are (H, W) = {tuple(size)}")
    mask = mask.to(device=device, dtype=torch.float32)
    if not bool(torch.isfinite(mask).all()) or bool((mask < 0).any()) or bool((mask > 1).any()):
        raise InputError(source, "mask values must be 0/1 (or probabilities in [0, 1])")
    return mask


def check_settings(mem_every: int, top_k: int | None, max_memory_frames: int | None) -> None:
    """Propagation settings: positive integers (``top_k``/``max_memory_frames`` may be ``None``)."""
    for name, value, optional in (
        ("mem_every", mem_every, False),
        ("top_k", top_k, True),
        ("max_memory_frames", max_memory_frames, True),
    ):
        if value is None and optional:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise InputError(name, f"must be a positive integer{' or None' if optional else ''}, got {value!r}")
