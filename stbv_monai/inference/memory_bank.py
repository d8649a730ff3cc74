"""Key/value memory of one propagation pass, optionally bounded in size."""

from __future__ import annotations

import torch

__all__ = ["MemoryBank"]


class MemoryBank:
    """Keys and values of memorised frames; permanent (reference) frames plus a FIFO of others.

    Args:
        max_frames: bound on the number of frames held (permanent ones included). When an
            addition exceeds it, the oldest non-permanent frame is evicted; permanent frames
            are never evicted (if they alone fill the bound, nothing else is kept).
            ``None``: unbounded, as STCN.
    """

    def __init__(self, max_frames: int | None = None) -> None:
        if max_frames is not None and max_frames < 1:
            raise ValueError(f"max_frames must be >= 1 or None, got {max_frames}")
        self.max_frames = max_frames
        self._permanent: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._recent: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._cache: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def num_frames(self) -> int:
        """Frames currently held."""
        return len(self._permanent) + len(self._recent)

    def add(self, key: torch.Tensor, value: torch.Tensor, permanent: bool = False) -> None:
        """Memorise one frame.

        Args:
            key: ``(B, Ck, h, w)`` (or ``(B, Ck, N)``).
            value: ``(B, Cv, h, w)`` (or ``(B, Cv, N)``).
            permanent: never evict (reference frames).
        """
        entry = (key.flatten(start_dim=2), value.flatten(start_dim=2))
        (self._permanent if permanent else self._recent).append(entry)
        if self.max_frames is not None:
            room = max(self.max_frames - len(self._permanent), 0)
            del self._recent[: max(len(self._recent) - room, 0)]
        self._cache = None

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All memory as ``keys (B, Ck, N)`` and ``values (B, Cv, N)``, ``N = frames * h * w``."""
        if not self.num_frames:
            raise RuntimeError("the memory bank is empty")
        if self._cache is None:
            entries = self._permanent + self._recent
            self._cache = (torch.cat([k for k, _ in entries], dim=2), torch.cat([v for _, v in entries], dim=2))
        return self._cache
