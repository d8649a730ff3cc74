"""Small helpers shared by the transforms: random-state propagation and tensor conversion."""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
from monai.transforms import Randomizable
from monai.utils import MAX_SEED, convert_to_tensor

__all__ = ["propagate_random_state", "as_tensor"]


def propagate_random_state(parent: Randomizable, children: Iterable[Randomizable]) -> None:
    """Seed each child from ``parent.R`` (as MONAI's ``Compose`` does), so one seed fixes them all.

    Drawing a fresh seed per child keeps their streams independent; giving every child the
    parent's seed would make, e.g., two samplers draw the same numbers.
    """
    for child in children:
        child.set_random_state(seed=int(parent.R.randint(MAX_SEED, dtype="uint32")))


def as_tensor(data: object, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A plain ``torch.Tensor`` (no MONAI metadata) from an array, tensor or MetaTensor."""
    if isinstance(data, np.ndarray) and not data.flags.writeable:
        data = data.copy()
    out = convert_to_tensor(data, track_meta=False)
    return out if dtype is None else out.to(dtype)
