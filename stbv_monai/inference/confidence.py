"""The one definition of a prediction's confidence, used by stage 2's manifest and the MONAI Label app."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["frame_confidence"]


def frame_confidence(probs: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Per-frame confidence ``(T,)`` of probabilities ``(T, H, W)``: mean over pixels of max(p, 1 − p), in [0.5, 1].

    0.5 is a frame where every pixel is a coin toss, 1 one where every pixel is certain.
    """
    probs = torch.as_tensor(probs, dtype=torch.float32)
    return torch.maximum(probs, 1 - probs).flatten(1).mean(1)
