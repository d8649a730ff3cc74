"""Random rectangles with a given area fraction and aspect ratio (CutOut and CutMix boxes)."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["sample_box"]


def sample_box(
    rng: np.random.RandomState,
    height: int,
    width: int,
    area: tuple[float, float] = (0.02, 0.4),
    ratio: tuple[float, float] = (0.3, 1 / 0.3),
    max_tries: int = 50,
) -> tuple[slice, slice]:
    """Draw a box the way ST++'s ``cutout`` and UniMatch's ``obtain_cutmix_box`` do.

    The area is ``U(area) * H * W``, the aspect ratio (height / width) ``U(ratio)``, the
    top-left corner uniform over the frame; draws that do not fit are redrawn. After
    ``max_tries`` failures the last box is clipped to the frame, so the call always returns.

    Args:
        rng: the caller's ``self.R`` (keeps transforms deterministic under ``set_random_state``).
        height: ``H`` of the frame.
        width: ``W`` of the frame.
        area: range of the box area as a fraction of ``H * W``.
        ratio: range of the box aspect ratio ``h / w``.
        max_tries: redraws before clipping.

    Returns:
        ``(rows, cols)`` slices of a box of at least one pixel.
    """
    for _ in range(max_tries):
        size = rng.uniform(*area) * height * width
        r = rng.uniform(*ratio)
        box_h = max(1, int(math.sqrt(size * r)))
        box_w = max(1, int(math.sqrt(size / r)))
        y = int(rng.randint(0, height))
        x = int(rng.randint(0, width))
        if y + box_h <= height and x + box_w <= width:
            break
    return slice(y, min(y + box_h, height)), slice(x, min(x + box_w, width))
