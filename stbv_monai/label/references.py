"""Which frames of an annotator's label video are references for propagation.

A label video ``(T, H, W)`` arrives with every ``propagate`` request (or is the video's saved
label). Three rules, first match wins:

1. **explicit**: the request lists ``reference_frames``; exactly those frames are references,
   with the label's masks there, so an *empty* listed frame says "no lesion here".
2. **edited result**: the label is the last result this server returned for the video, edited
   on some frames (the Slicer round trip: run, fix a frame, run again). The references are the
   previous references plus every frame whose mask the annotator changed (``corrected``); an
   erased frame becomes an empty reference ("lesion absent"). A label counts as an edited
   result when at least one non-reference frame on which the result showed a lesion comes back
   unchanged, which a freshly painted sparse label practically never does.
3. **painted**: every frame with at least one lesion pixel is a reference; empty frames are
   unlabelled.

:class:`ResultMemory` keeps the last result per video (bit-packed, a bounded number of videos)
so rule 2 can be applied; it lives in the server process and is lost on restart.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stbv_monai.data import check_labelled_frames
from stbv_monai.errors import InputError

__all__ = ["PreviousResult", "ReferenceChoice", "ResultMemory", "choose_references", "parse_frame_list", "painted_frames"]

EXPLICIT, EDITED, PAINTED = "explicit", "edited_result", "painted"
NO_PAINT = ("no painted frame: paint the lesion on at least one frame, or list frames in "
            "'reference_frames' (a listed empty frame means 'no lesion here')")


@dataclass(frozen=True)
class PreviousResult:
    """The last mask video returned for one video and the references it came from."""

    references: tuple[int, ...]
    shape: tuple[int, int, int]
    packed: np.ndarray

    @classmethod
    def of(cls, references: Sequence[int], mask: np.ndarray) -> PreviousResult:
        mask = np.asarray(mask) > 0
        return cls(tuple(sorted(int(t) for t in references)), tuple(mask.shape), np.packbits(mask, axis=None))

    def mask(self) -> np.ndarray:
        """``(T, H, W)`` bool."""
        n = int(np.prod(self.shape))
        return np.unpackbits(self.packed, count=n).reshape(self.shape).astype(bool)


@dataclass(frozen=True)
class ReferenceChoice:
    """Result of :func:`choose_references`.

    Attributes:
        frames: sorted reference frame indices.
        source: ``"explicit"``, ``"edited_result"`` or ``"painted"``.
        corrected: frames the annotator changed relative to the previous result (rule 2 only).
    """

    frames: list[int]
    source: str
    corrected: list[int]


def painted_frames(label: np.ndarray) -> list[int]:
    """Frames of a ``(T, H, W)`` label holding at least one lesion pixel."""
    label = np.asarray(label)
    return [int(t) for t in np.flatnonzero(label.reshape(label.shape[0], -1).any(axis=1))]


def parse_frame_list(value: object, n_frames: int | None, where: str = "reference_frames") -> list[int] | None:
    """Read a frame list from a request: a list of ints, ``"3, 17"`` or ``"[3, 17]"``; empty → ``None``.

    Raises:
        InputError: not integers, duplicates, or out of ``[0, n_frames)``.
    """
    if value is None or (isinstance(value, str) and not value.strip("[] ,")):
        return None
    if isinstance(value, str):
        parts = [p for p in value.strip("[]").replace(";", ",").split(",") if p.strip()]
        try:
            value = [int(p) for p in parts]
        except ValueError as exc:
            raise InputError(where, f"must be frame numbers like '3, 17', got {value!r}") from exc
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = [int(value)]
    if isinstance(value, (list, tuple)) and not value:
        return None
    return check_labelled_frames(list(value) if isinstance(value, (list, tuple)) else value, n_frames, where)


def choose_references(label: np.ndarray, explicit: Sequence[int] | None = None,
                      previous: PreviousResult | None = None) -> ReferenceChoice:
    """Apply the three rules of the module docstring to a ``(T, H, W)`` label.

    Raises:
        InputError: no explicit frames and nothing painted.
    """
    label = np.asarray(label) > 0
    if explicit:
        frames = check_labelled_frames(list(explicit), label.shape[0], "reference_frames")
        return ReferenceChoice(sorted(frames), EXPLICIT, [])
    if previous is not None and previous.shape == label.shape:
        before = previous.mask()
        if _is_edited(label, before, previous.references):
            changed = [int(t) for t in np.flatnonzero((label != before).reshape(label.shape[0], -1).any(axis=1))]
            frames = sorted(set(previous.references) | set(changed))
            return ReferenceChoice(frames, EDITED, changed)
    frames = painted_frames(label)
    if not frames:
        raise InputError("label", NO_PAINT)
    return ReferenceChoice(frames, PAINTED, [])


def _is_edited(label: np.ndarray, before: np.ndarray, references: Sequence[int]) -> bool:
    refs = set(references)
    for t in range(label.shape[0]):
        if t not in refs and before[t].any() and np.array_equal(label[t], before[t]):
            return True
    return False


class ResultMemory:
    """The last result per video (key: the video's real path), for the edited-result rule.

    Args:
        capacity: videos kept; the least recently used is dropped first.
    """

    def __init__(self, capacity: int = 16) -> None:
        self.capacity = int(capacity)
        self._items: OrderedDict[str, PreviousResult] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> PreviousResult | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def remember(self, key: str, references: Sequence[int], mask: np.ndarray) -> None:
        with self._lock:
            self._items[key] = PreviousResult.of(references, mask)
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
