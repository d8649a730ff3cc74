"""Which reference segments which frame, and the propagation passes that follow (pure functions).

Merge rule (the paper's quadro-inference, generalised to any number of references): every
non-reference frame takes its result from the **nearest reference in time**; it is
propagated forward from the nearest earlier reference or backward from the nearest later
one, whichever is closer. **Ties go to the earlier reference** (the forward pass). Frames
before the first reference come from the backward pass of the first reference, frames
after the last from the forward pass of the last one.

With ``bidirectional=False`` every frame after a reference is propagated forward from the
nearest preceding reference; frames before the first reference still come from the
backward pass of the first reference (the only source they have).

Each frame is propagated exactly once: a pass from reference ``r`` covers only the frames
assigned to ``(r, direction)``, which are contiguous and start next to ``r``.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["FORWARD", "BACKWARD", "Pass", "assign_sources", "plan_passes"]

FORWARD = 1
BACKWARD = -1


@dataclass(frozen=True)
class Pass:
    """One propagation pass.

    Attributes:
        reference: the reference frame index.
        direction: ``FORWARD`` (+1) or ``BACKWARD`` (-1).
        frames: the frames to segment, in propagation order (moving away from ``reference``).
    """

    reference: int
    direction: int
    frames: tuple[int, ...]


def assign_sources(num_frames: int, references: Iterable[int], bidirectional: bool = True) -> list[tuple[int, int]]:
    """For each frame, ``(reference, direction)`` of the pass that segments it.

    Args:
        num_frames: ``T``.
        references: indices of the reference frames (any order, within ``[0, T)``, at least one).
        bidirectional: see the module docstring.

    Returns:
        ``T`` pairs; a reference frame gets ``(itself, 0)``.
    """
    refs = sorted(set(int(r) for r in references))
    if not refs:
        raise ValueError("at least one reference frame is needed")
    if refs[0] < 0 or refs[-1] >= num_frames:
        raise ValueError(f"reference indices {refs} out of range for {num_frames} frames")
    sources = []
    for t in range(num_frames):
        i = bisect.bisect_right(refs, t)
        before = refs[i - 1] if i > 0 else None
        after = refs[i] if i < len(refs) else None
        if before == t:
            sources.append((t, 0))
        elif before is None:
            sources.append((after, BACKWARD))
        elif after is None or not bidirectional or t - before <= after - t:
            sources.append((before, FORWARD))
        else:
            sources.append((after, BACKWARD))
    return sources


def plan_passes(num_frames: int, references: Iterable[int], bidirectional: bool = True) -> list[Pass]:
    """The passes that realise :func:`assign_sources`, each frame in exactly one of them.

    Returns:
        passes ordered by reference, backward before forward; empty passes are omitted.
    """
    sources = assign_sources(num_frames, references, bidirectional)
    frames: dict[tuple[int, int], list[int]] = {}
    for t, (ref, direction) in enumerate(sources):
        if direction != 0:
            frames.setdefault((ref, direction), []).append(t)
    passes = []
    for (ref, direction), ts in sorted(frames.items()):
        ordered = sorted(ts, key=lambda t: abs(t - ref))
        passes.append(Pass(ref, direction, tuple(ordered)))
    return passes
