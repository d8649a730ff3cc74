"""Training-clip sampling from a whole video: which frames a training iteration sees.

STCN trains on clips of three frames. ST-BV samples them in two ways:

* ``"bootstrap"`` (stage 1, the teacher): only the expert-labelled frames are eligible, any
  number of them: two are re-sampled to three (a random order with one repeated), one becomes a
  clip of the same frame three times (STCN's static-image case), three or more give three
  distinct ones; the per-frame weak augmentation then makes repeated frames differ.
* ``"window"`` (stage 3, the student; full supervision): STCN-style, frames sorted in time,
  consecutive picks at most ``max_skip`` apart, drawn from frames whose ``source > 0``.

Optionally a space-time-consistency (STCS) triplet ``[t, t+1, tau]`` is drawn from anywhere
in the video (no labels needed).

MONAI has no video-clip sampler (its croppers act on spatial axes), hence these classes.
"""

from __future__ import annotations

import logging
from typing import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Randomizable

from stbv_monai.constants import SOURCE_GT
from stbv_monai.errors import InputError
from stbv_monai.transforms.source import check_source, derive_source
from stbv_monai.transforms.utils import as_tensor, propagate_random_state

__all__ = ["CLIP_MODES", "RandSampleClip", "SampleSTCSTriplet", "RandSampleClipd"]

logger = logging.getLogger(__name__)

CLIP_MODES = ("bootstrap", "window")


def _chain_starts(eligible: np.ndarray, length: int, max_skip: int, min_step: int) -> list[np.ndarray]:
    """``feasible[k][f]``: a chain of ``k + 1`` eligible frames starting at ``f`` exists.

    Consecutive frames of a chain are ``min_step .. max_skip`` apart (``min_step`` 0 allows repeats).
    """
    t = eligible.shape[0]
    feasible = [eligible.copy()]
    pos = np.arange(t)
    for _ in range(1, length):
        csum = np.concatenate([[0], np.cumsum(feasible[-1].astype(np.int64))])
        lo = np.minimum(pos + min_step, t)
        hi = np.minimum(pos + max_skip, t - 1)
        count = csum[hi + 1] - csum[lo]
        feasible.append(eligible & (count > 0))
    return feasible


class RandSampleClip(Randomizable):
    """Choose the frame indices of a training clip from the per-frame label sources.

    Args:
        num_frames: ``N``, frames per clip (STCN: 3).
        mode: ``"bootstrap"`` (labelled frames only, repeated to fill the clip, random order)
            or ``"window"`` (sorted in time, steps of 1..``max_skip``, ``source > 0`` only).
        max_skip: largest time step between consecutive clip frames in ``"window"`` mode.
        reverse_prob: probability of reversing a ``"window"`` clip in time (STCN uses 0.5).

    Call with ``source`` ``(T,)``; returns ``(N,)`` int64 frame indices.
    """

    def __init__(
        self, num_frames: int = 3, mode: str = "window", max_skip: int = 10, reverse_prob: float = 0.0
    ) -> None:
        if mode not in CLIP_MODES:
            raise ValueError(f"mode must be one of {CLIP_MODES}, got {mode!r}")
        if num_frames < 1 or max_skip < 1:
            raise ValueError(f"num_frames and max_skip must be >= 1, got {num_frames}, {max_skip}")
        self.num_frames = num_frames
        self.mode = mode
        self.max_skip = max_skip
        self.reverse_prob = reverse_prob
        self._indices = np.zeros((num_frames,), dtype=np.int64)

    def randomize(self, source: np.ndarray) -> None:
        """Draw the clip for a video whose per-frame sources are ``source`` ``(T,)``."""
        source = np.asarray(source).reshape(-1)
        if self.mode == "bootstrap":
            self._indices = self._bootstrap(np.flatnonzero(source == SOURCE_GT))
        else:
            self._indices = self._window(source > 0)

    def _bootstrap(self, labelled: np.ndarray) -> np.ndarray:
        if labelled.size == 0:
            raise InputError("source", "bootstrap sampling needs at least one ground-truth frame (source == 1)")
        n = self.num_frames
        if labelled.size >= n:
            picks = self.R.choice(labelled, size=n, replace=False)
        else:  # every labelled frame once, the rest repeats
            picks = np.concatenate([labelled, self.R.choice(labelled, size=n - labelled.size, replace=True)])
        return self.R.permutation(picks).astype(np.int64)

    def _window(self, eligible: np.ndarray) -> np.ndarray:
        if not eligible.any():
            raise InputError("source", "window sampling needs at least one labelled frame (source > 0)")
        n = self.num_frames
        feasible = _chain_starts(eligible, n, self.max_skip, min_step=1)
        min_step = 1
        if not feasible[-1].any():  # too few eligible frames or gaps wider than max_skip: allow repeats
            logger.debug("no %d-frame chain within max_skip=%d; repeating frames", n, self.max_skip)
            min_step = 0
            feasible = _chain_starts(eligible, n, self.max_skip, min_step=0)
        picks = [int(self.R.choice(np.flatnonzero(feasible[-1])))]
        for k in range(n - 2, -1, -1):
            lo, hi = picks[-1] + min_step, min(picks[-1] + self.max_skip, eligible.shape[0] - 1)
            nxt = lo + np.flatnonzero(feasible[k][lo:hi + 1])
            picks.append(int(self.R.choice(nxt)))
        out = np.asarray(picks, dtype=np.int64)
        if self.R.random_sample() < self.reverse_prob:
            out = out[::-1].copy()
        return out

    def __call__(self, source: np.ndarray, randomize: bool = True) -> np.ndarray:
        """Return ``(N,)`` int64 frame indices for ``source`` ``(T,)``."""
        if randomize:
            self.randomize(source)
        return self._indices.copy()


class SampleSTCSTriplet(Randomizable):
    """Draw ``[t, t+1, tau]`` for the space-time consistency loss (paper sec. 3.2).

    ``t`` is uniform over ``0..T-2``; the anchor ``tau`` is uniform over the frames within
    ``stcs_range`` of the pair (``|tau - t| <= stcs_range`` or ``|tau - (t+1)| <= stcs_range``),
    excluding ``t`` and ``t+1``; ``None`` means anywhere in the video. Labels are not needed.

    Args:
        stcs_range: largest distance of the anchor from the pair, or ``None``.
    """

    def __init__(self, stcs_range: int | None = None) -> None:
        if stcs_range is not None and stcs_range < 1:
            raise ValueError(f"stcs_range must be >= 1 or None, got {stcs_range}")
        self.stcs_range = stcs_range
        self._indices = np.array([0, 1, 2], dtype=np.int64)

    def randomize(self, num_frames: int) -> None:
        """Draw a triplet for a video of ``num_frames`` frames."""
        if num_frames < 3:
            raise InputError("image", f"the space-time consistency triplet needs at least 3 frames, got {num_frames}")
        t = int(self.R.randint(0, num_frames - 1))
        lo, hi = 0, num_frames - 1
        if self.stcs_range is not None:
            lo, hi = max(0, t - self.stcs_range), min(num_frames - 1, t + 1 + self.stcs_range)
        candidates = np.setdiff1d(np.arange(lo, hi + 1), [t, t + 1])
        self._indices = np.array([t, t + 1, int(self.R.choice(candidates))], dtype=np.int64)

    def __call__(self, num_frames: int, randomize: bool = True) -> np.ndarray:
        """Return ``(3,)`` int64 indices ``[t, t+1, tau]``."""
        if randomize:
            self.randomize(num_frames)
        return self._indices.copy()


class RandSampleClipd(MapTransform, Randomizable):
    """Dictionary wrapper of :class:`RandSampleClip` (and :class:`SampleSTCSTriplet`): video sample -> clip.

    Reads (video level): ``keys`` (default ``image`` and ``label``, each ``(T, H, W)``);
    ``source`` ``(T,)`` (or, when absent, ``labelled_frames``); optional ``confidence`` ``(T,)``;
    optional ``loss_mask`` ``(T, H, W)`` (a pixel-level ignore map from the pseudo-labeller).

    Writes (clip level, plain ``torch`` tensors): each of ``keys`` ``(N, H, W)`` float32;
    ``source`` ``(N,)`` uint8; ``frame_index`` ``(N,)`` int64; ``loss_mask`` ``(N, H, W)``
    float32, 1 on frames with ``source > 0`` (times the input ``loss_mask`` if given), else 0;
    ``confidence`` ``(N,)`` float32 if given; with ``stcs``: ``stcs_image`` ``(3, H, W)``
    float32 ordered ``[t, t+1, tau]`` and ``stcs_index`` ``(3,)`` int64. ``labelled_frames`` is
    removed: its length varies between videos, so clips keeping it would not collate into a
    batch (``source`` says which clip frames are labelled). Other keys pass through.

    Args:
        keys: per-frame video arrays to slice (the first one also feeds ``stcs_image``).
        num_frames: ``N``.
        mode: ``"bootstrap"`` or ``"window"`` (see :class:`RandSampleClip`).
        max_skip: see :class:`RandSampleClip`.
        reverse_prob: see :class:`RandSampleClip`.
        full_supervision: every frame is ground truth (``source`` all 1, whatever the input says).
        stcs: also draw the space-time consistency triplet.
        stcs_range: see :class:`SampleSTCSTriplet`.
        source_key, labelled_key, confidence_key, loss_mask_key, index_key, stcs_image_key,
            stcs_index_key: dictionary keys.
        allow_missing_keys: tolerate missing ``keys`` (e.g. an unlabelled sample without ``label``).
    """

    def __init__(
        self,
        keys: KeysCollection = ("image", "label"),
        num_frames: int = 3,
        mode: str = "window",
        max_skip: int = 10,
        reverse_prob: float = 0.0,
        full_supervision: bool = False,
        stcs: bool = False,
        stcs_range: int | None = None,
        source_key: str = "source",
        labelled_key: str = "labelled_frames",
        confidence_key: str = "confidence",
        loss_mask_key: str = "loss_mask",
        index_key: str = "frame_index",
        stcs_image_key: str = "stcs_image",
        stcs_index_key: str = "stcs_index",
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.sampler = RandSampleClip(num_frames, mode, max_skip, reverse_prob)
        self.stcs_sampler = SampleSTCSTriplet(stcs_range) if stcs else None
        self.full_supervision = full_supervision
        self.source_key, self.labelled_key, self.confidence_key = source_key, labelled_key, confidence_key
        self.loss_mask_key, self.index_key = loss_mask_key, index_key
        self.stcs_image_key, self.stcs_index_key = stcs_image_key, stcs_index_key

    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> RandSampleClipd:
        super().set_random_state(seed, state)
        propagate_random_state(self, [self.sampler] + ([self.stcs_sampler] if self.stcs_sampler else []))
        return self

    def randomize(self, data: object = None) -> None:
        """Randomness lives in the wrapped samplers; they draw when called."""

    def _source(self, d: Mapping[Hashable, object], num_frames: int, origin: object) -> np.ndarray:
        if self.full_supervision or self.source_key not in d:
            return derive_source(num_frames, d.get(self.labelled_key), self.full_supervision, origin)
        return check_source(d[self.source_key], num_frames, origin)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        origin = d.get("image_path", "sample")
        first = self.first_key(d)
        if first == ():
            raise InputError(origin, f"none of the keys {list(self.keys)} is in the sample")
        video = d[first]
        num_frames, height, width = (int(s) for s in video.shape[-3:])
        source = self._source(d, num_frames, origin)
        try:
            idx = self.sampler(source)
            stcs_idx = self.stcs_sampler(num_frames) if self.stcs_sampler is not None else None
        except InputError as exc:
            raise InputError(origin, exc.problem) from exc
        index = torch.from_numpy(idx)
        for key in self.key_iterator(d):
            d[key] = as_tensor(d[key][idx], torch.float32)
        clip_source = torch.from_numpy(source[idx].copy())
        mask = (clip_source > 0).to(torch.float32)[:, None, None].expand(-1, height, width).clone()
        if self.loss_mask_key in d and d[self.loss_mask_key] is not None:
            mask = mask * as_tensor(d[self.loss_mask_key][idx], torch.float32)
        d[self.loss_mask_key] = mask
        d[self.source_key] = clip_source
        d.pop(self.labelled_key, None)
        d[self.index_key] = index
        if self.confidence_key in d and d[self.confidence_key] is not None:
            d[self.confidence_key] = as_tensor(np.asarray(d[self.confidence_key])[idx], torch.float32)
        if stcs_idx is not None:
            d[self.stcs_image_key] = as_tensor(video[stcs_idx], torch.float32)
            d[self.stcs_index_key] = torch.from_numpy(stcs_idx)
        return d
