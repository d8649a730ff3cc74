"""Where two clicks buy the most: the next video to annotate and the two frames to paint.

Both choices work on **thumbnails**: each frame area-averaged to 16 x 16 intensities, so the
cost is a read of the video and a few small matrix operations.

**Two frames** (:func:`pick_reference_frames`). Propagation segments every frame from the
*nearest reference in time* (ties to the earlier one). The pair ``(a, b)`` chosen is the one
for which that very assignment represents the video best:

    minimise  sum_t  d(x_t, x_ref(t))        over pairs with  b - a >= min_gap,

where ``x`` are the thumbnails, ``d`` the Euclidean distance divided by the video's mean
frame-to-frame distance, and ``ref(t)`` is ``a`` for ``t <= (a + b) / 2`` and ``b`` otherwise.
It is a 2-medoids clustering of the frames whose clusters are the two halves of the time axis
that propagation will give each reference: each chosen frame is the most typical frame of the
stretch it will be propagated into. ``min_gap`` (default 20 % of the video) keeps the two
frames apart; a small term ``1e-3 * |t - ref(t)| / T`` breaks ties towards temporally central
frames (it decides only for near-static videos). All pairs are scored exactly with prefix
sums, ``O(T^2)``.

**Next video** (:func:`order_videos`). Each video is summarised by its mean thumbnail. With no
labelled video yet, the unlabelled video closest to the mean of all is proposed first (the
most typical one); afterwards, the unlabelled video farthest from every labelled one (greedy
k-centre: cover what the labelled set does not yet look like).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["THUMBNAIL_SIZE", "FramePair", "default_min_gap", "order_videos", "pick_reference_frames", "thumbnails"]

THUMBNAIL_SIZE = 16
TIE_BREAK = 1e-3
MIN_GAP_FRACTION = 0.2


@dataclass(frozen=True)
class FramePair:
    """The two frames to paint.

    Attributes:
        frames: ``(a, b)`` with ``a < b``.
        cost: the objective of the module docstring divided by ``T`` (0: every frame looks like its reference).
        min_gap: the minimum distance in frames that was enforced.
    """

    frames: tuple[int, int]
    cost: float
    min_gap: int


def thumbnails(frames: np.ndarray, size: int = THUMBNAIL_SIZE) -> np.ndarray:
    """``(T, H, W)`` frames → ``(T, size, size)`` float32 area averages (adaptive pooling)."""
    x = torch.as_tensor(np.asarray(frames, dtype=np.float32))[:, None]
    return F.adaptive_avg_pool2d(x, (size, size))[:, 0].numpy()


def default_min_gap(n_frames: int) -> int:
    """20 % of the video, at least one frame, at most ``T - 1``."""
    return max(1, min(n_frames - 1, int(round(MIN_GAP_FRACTION * n_frames))))


def pick_reference_frames(thumbs: np.ndarray, min_gap: int | None = None) -> FramePair:
    """Choose the two frames to paint from ``(T, h, w)`` thumbnails (see the module docstring).

    Args:
        thumbs: frame thumbnails, ``T >= 2``.
        min_gap: least ``b - a``; ``None``: :func:`default_min_gap`. Clipped to ``[1, T - 1]``.
    """
    x = np.asarray(thumbs, dtype=np.float64).reshape(len(thumbs), -1)
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"need at least 2 frames to pick two, got {n}")
    gap = default_min_gap(n) if min_gap is None else max(1, min(n - 1, int(min_gap)))
    cost = _cost_matrix(x)
    prefix = np.cumsum(cost, axis=0)  # prefix[t, r] = sum_{s <= t} cost[s, r]
    best: tuple[float, int, int] | None = None
    for a in range(n - gap):
        b = np.arange(a + gap, n)
        mid = (a + b) // 2  # frames <= mid go to a (ties to the earlier reference)
        total = prefix[mid, a] + prefix[n - 1, b] - prefix[mid, b]
        j = int(np.argmin(total))
        if best is None or total[j] < best[0] - 1e-12:
            best = (float(total[j]), a, int(b[j]))
    assert best is not None
    return FramePair((best[1], best[2]), best[0] / n, gap)


def _cost_matrix(x: np.ndarray) -> np.ndarray:
    """``cost[t, r]``: how badly frame ``r`` stands for frame ``t``."""
    sq = (x * x).sum(axis=1)
    dist = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0))
    n = len(x)
    scale = dist.sum() / max(n * (n - 1), 1)
    appearance = dist / scale if scale > 1e-12 else np.zeros_like(dist)
    t = np.arange(n, dtype=np.float64)
    return appearance + TIE_BREAK * np.abs(t[:, None] - t[None, :]) / n


def order_videos(descriptors: Mapping[str, np.ndarray], labelled: Sequence[str]) -> list[str]:
    """Unlabelled video ids, the one to annotate next first (see the module docstring).

    Args:
        descriptors: ``{video id: mean thumbnail}`` of every readable video.
        labelled: ids that already have a saved label.
    """
    done = [k for k in labelled if k in descriptors]
    todo = sorted(k for k in descriptors if k not in set(labelled))
    if not todo:
        return []
    vec = {k: np.asarray(v, dtype=np.float64).ravel() for k, v in descriptors.items()}
    if done:
        ref = np.stack([vec[k] for k in done])
        score = {k: -float(np.min(np.linalg.norm(ref - vec[k], axis=1))) for k in todo}  # far from labelled first
    else:
        centre = np.mean([vec[k] for k in todo], axis=0)
        score = {k: float(np.linalg.norm(vec[k] - centre)) for k in todo}  # most typical first
    return sorted(todo, key=lambda k: (score[k], k))
