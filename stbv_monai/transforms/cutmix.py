"""CutMix between pseudo-labelled frames of different clips in a batch (part of the strong A_s).

A box from frame ``n`` of another clip of the batch is pasted into frame ``n`` of this clip:
image, label and loss mask together (hard labels, UniMatch-style), and only where both frames
are pseudo-labelled (``source == 2``): ground-truth frames are neither changed nor copied.

Why not MONAI's ``CutMix``/``CutMixd`` (1.6): it needs the exact ``batch_size`` at construction
(the last, smaller batch breaks it); every sample is mixed (no per-sample probability) and the
shuffled partner may be the sample itself; one box corner is drawn for the whole batch and
boxes are clipped at the border, so the pasted area is not the drawn one; its ``Mixer``
design pairs one label key per image key and ``CutMixd`` silently does nothing without
``label_keys``; and it cannot restrict pasting to pseudo-labelled frames. Its
``apply_on_labels`` mixes labels softly by the area ratio, while the paper pastes hard labels
with the image. So this is written by hand; the box law is UniMatch's ``obtain_cutmix_box``:
area ``U(0.02, 0.4)`` of the frame, aspect ``U(0.3, 1/0.3)``, the same law as ST++'s CutOut.
"""

from __future__ import annotations

from typing import Any, Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Randomizable
from monai.utils import ensure_tuple

from stbv_monai.transforms.boxes import sample_box
from stbv_monai.constants import SOURCE_PSEUDO
from stbv_monai.transforms.utils import propagate_random_state

__all__ = ["RandPseudoCutMix", "RandPseudoCutMixd"]


class RandPseudoCutMix(Randomizable):
    """Batch-level hard CutMix restricted to pseudo-labelled frames.

    :meth:`randomize` takes the batch's ``source`` ``(B, N)``: each clip is mixed with
    probability ``prob``; its partner is drawn among the other clips that share at least one
    pseudo-labelled frame position with it; one box per clip is used for all its frames; frame
    ``n`` is pasted only when ``source[b, n] == source[partner, n] == 2``. Calling on a tensor
    ``(B, N, ..., H, W)`` pastes the boxes (reading from the unmixed input). After
    :meth:`randomize`: :attr:`partner` ``(B,)`` (-1: not mixed), :attr:`mixed` ``(B, N)`` bool,
    :attr:`boxes` (``(rows, cols)`` or ``None`` per clip).

    Args:
        prob: probability of mixing each clip.
        area: range of the box area as a fraction of ``H * W``.
        ratio: range of the box aspect ratio.
    """

    def __init__(self, prob: float = 0.5, area: tuple[float, float] = (0.02, 0.4),
                 ratio: tuple[float, float] = (0.3, 1 / 0.3)) -> None:
        self.prob = prob
        self.area = area
        self.ratio = ratio
        self.partner = np.zeros((0,), dtype=np.int64)
        self.mixed = np.zeros((0, 0), dtype=bool)
        self.boxes: list[tuple[slice, slice] | None] = []

    def randomize(self, source: torch.Tensor | np.ndarray, spatial_size: Sequence[int]) -> None:
        """Draw partners and boxes for a batch with per-frame sources ``(B, N)`` and frames ``(H, W)``."""
        src = source.detach().cpu().numpy() if isinstance(source, torch.Tensor) else np.asarray(source)
        pseudo = src.reshape(src.shape[0], -1) == SOURCE_PSEUDO
        batch = pseudo.shape[0]
        self.partner = np.full((batch,), -1, dtype=np.int64)
        self.mixed = np.zeros_like(pseudo)
        self.boxes = [None] * batch
        for b in range(batch):
            if self.R.random_sample() >= self.prob:
                continue
            candidates = [c for c in range(batch) if c != b and (pseudo[b] & pseudo[c]).any()]
            if not candidates:
                continue
            c = candidates[int(self.R.randint(len(candidates)))]
            self.partner[b] = c
            self.mixed[b] = pseudo[b] & pseudo[c]
            self.boxes[b] = sample_box(self.R, int(spatial_size[-2]), int(spatial_size[-1]), self.area, self.ratio)

    def __call__(self, data: torch.Tensor, source: torch.Tensor | np.ndarray | None = None,
                 randomize: bool = True) -> torch.Tensor:
        """Paste the boxes into ``data`` ``(B, N, ..., H, W)``; ``randomize`` needs ``source`` ``(B, N)``."""
        if randomize:
            if source is None:
                raise ValueError("RandPseudoCutMix needs 'source' (B, N) to randomize")
            self.randomize(source, data.shape[-2:])
        if data.shape[0] != self.partner.shape[0]:
            raise ValueError(f"batch of {data.shape[0]} clips, but the mix was drawn for {self.partner.shape[0]}")
        out = data.clone()
        for b in np.flatnonzero(self.partner >= 0).tolist():
            rows, cols = self.boxes[b]
            for n in np.flatnonzero(self.mixed[b]).tolist():
                out[b, n][..., rows, cols] = data[self.partner[b], n][..., rows, cols]
        return out


class RandPseudoCutMixd(MapTransform, Randomizable):
    """Dictionary wrapper of :class:`RandPseudoCutMix` for a collated batch.

    Reads ``keys`` (default ``image``) and ``label_keys`` (default ``label``, ``loss_mask``),
    each ``(B, N, H, W)`` (any batch size), and ``source`` ``(B, N)``. Writes them with one
    shared draw (so image, label and loss mask are pasted together), plus
    ``cutmix_applied`` ``(B, N)`` bool and ``cutmix_partner`` ``(B,)`` int64 (-1: none).
    Use it on the batch after collation, e.g. in the student trainer's batch preparation.

    Args:
        keys: image keys.
        label_keys: keys pasted with the image (hard labels, ignore masks).
        prob, area, ratio: see :class:`RandPseudoCutMix`.
        source_key, applied_key, partner_key: dictionary keys.
    """

    def __init__(
        self,
        keys: KeysCollection = ("image",),
        label_keys: KeysCollection = ("label", "loss_mask"),
        prob: float = 0.5,
        area: tuple[float, float] = (0.02, 0.4),
        ratio: tuple[float, float] = (0.3, 1 / 0.3),
        source_key: str = "source",
        applied_key: str = "cutmix_applied",
        partner_key: str = "cutmix_partner",
        allow_missing_keys: bool = True,
    ) -> None:
        MapTransform.__init__(self, ensure_tuple(keys) + ensure_tuple(label_keys), allow_missing_keys)
        self.mixer = RandPseudoCutMix(prob, area, ratio)
        self.source_key, self.applied_key, self.partner_key = source_key, applied_key, partner_key

    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> RandPseudoCutMixd:
        super().set_random_state(seed, state)
        propagate_random_state(self, [self.mixer])
        return self

    def randomize(self, data: object = None) -> None:
        """The draw happens in :meth:`__call__` (it needs the batch's sources and frame size)."""

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        keys = list(self.key_iterator(d))
        source = d[self.source_key]
        size = d[keys[0]].shape[-2:] if keys else (1, 1)
        self.mixer.randomize(source, size)
        for key in keys:
            d[key] = self.mixer(d[key], randomize=False)
        device = source.device if isinstance(source, torch.Tensor) else None
        d[self.applied_key] = torch.from_numpy(self.mixer.mixed.copy()).to(device)
        d[self.partner_key] = torch.from_numpy(self.mixer.partner.copy()).to(device)
        return d
