"""Per-frame label sources: where each frame's supervision comes from.

A video sample may carry ``"source"`` ``(T,)`` uint8: :data:`SOURCE_GT` for expert-labelled
frames, :data:`SOURCE_PSEUDO` for frames labelled by the teacher (quadro-inference), and
:data:`SOURCE_NONE` for frames without a usable label (they never reach the loss). When it is
absent it is derived from ``"labelled_frames"``. The codes are defined once, in
:mod:`stbv_monai.data.dataset`; :func:`derive_source` is its ``frame_sources`` plus the checks
a training transform needs (one-line :class:`~stbv_monai.errors.InputError` on bad input).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from stbv_monai.constants import SOURCE_GT, SOURCE_NONE, SOURCE_PSEUDO
from stbv_monai.errors import InputError

__all__ = ["SOURCE_NONE", "SOURCE_GT", "SOURCE_PSEUDO", "derive_source", "check_source"]


def derive_source(num_frames: int, labelled_frames: Sequence[int] | None, full_supervision: bool = False,
                  origin: object = "sample") -> np.ndarray:
    """Build ``source`` ``(T,)`` uint8: 1 at ``labelled_frames``, 0 elsewhere (all 1 if fully supervised).

    Args:
        num_frames: ``T``, the number of frames of the video.
        labelled_frames: indices of the expert-labelled frames (ignored when ``full_supervision``).
        full_supervision: every frame counts as ground truth (the 100 % upper-bound runs).
        origin: names the sample in error messages.

    Raises:
        InputError: no labelled frames given, or an index outside ``[0, T)``.
    """
    if full_supervision:
        return np.full((num_frames,), SOURCE_GT, dtype=np.uint8)
    if labelled_frames is None:
        raise InputError(origin, "neither 'source' nor 'labelled_frames' given: cannot tell which frames are labelled")
    idx = np.asarray(list(labelled_frames), dtype=np.int64).reshape(-1)
    if idx.size and (idx.min() < 0 or idx.max() >= num_frames):
        raise InputError(origin, f"labelled_frames {idx.tolist()} outside the video's {num_frames} frames")
    source = np.zeros((num_frames,), dtype=np.uint8)
    source[idx] = SOURCE_GT
    return source


def check_source(source: object, num_frames: int, origin: object = "sample") -> np.ndarray:
    """Return ``source`` as a ``(T,)`` uint8 array after checking its length and values.

    Raises:
        InputError: wrong length or values other than 0, 1, 2.
    """
    arr = np.asarray(source.detach().cpu() if hasattr(source, "detach") else source).reshape(-1)
    if arr.shape[0] != num_frames:
        raise InputError(origin, f"'source' has {arr.shape[0]} entries for a video of {num_frames} frames")
    if arr.size and not np.isin(arr, (SOURCE_NONE, SOURCE_GT, SOURCE_PSEUDO)).all():
        raise InputError(
            origin, f"'source' values must be 0 (none), 1 (ground truth) or 2 (pseudo), got {np.unique(arr).tolist()}"
        )
    return arr.astype(np.uint8)
