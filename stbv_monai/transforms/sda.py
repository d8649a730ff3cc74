"""Source-dependent augmentation (SDA, paper sec. 3.1, eq. 4): strong perturbation for pseudo frames only.

Ground-truth frames keep only the weak augmentation A_w (their labels are reliable); frames
whose label came from the teacher (``source == 2``) also get A_s, ST++'s strong perturbation,
so the student cannot simply reproduce the teacher's decisions on them.
"""

from __future__ import annotations

from typing import Any, Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Randomizable

from stbv_monai.constants import SOURCE_PSEUDO
from stbv_monai.transforms.strong import STRONG_OPS, RandStrongAugment
from stbv_monai.transforms.utils import as_tensor, propagate_random_state

__all__ = ["SourceDependentAugmentd"]


class SourceDependentAugmentd(MapTransform, Randomizable):
    """Apply :class:`RandStrongAugment` to the pseudo-labelled frames of a clip, and nothing else.

    Reads ``keys`` (default ``image``) ``(N, H, W)``, ``source`` ``(N,)`` and ``loss_mask``
    ``(N, H, W)``. Writes ``keys`` with frames where ``source == 2`` strongly perturbed (each
    frame its own draw; other frames bit-for-bit unchanged), ``loss_mask`` set to 0 inside each
    CutOut hole (ST++ ignores the cut region in the loss), ``strong_applied`` ``(N,)`` bool
    (some strong operation touched the frame) and ``strong_ops`` ``(N, 3)`` bool (which of
    jitter, blur, CutOut, see :data:`~stbv_monai.transforms.strong.STRONG_OPS`).

    Apply after the weak augmentation (eq. 4: ``A_s(A_w(I))``). ``enabled=False`` passes the
    clip through and records all-False flags (the "+STCS without SDA" ablation).

    Args:
        keys: image keys to perturb (``label`` is never touched).
        enabled: switch SDA on/off.
        source_key, loss_mask_key, applied_key, ops_key: dictionary keys.
        strong_kwargs: arguments of :class:`RandStrongAugment` (probabilities, ranges).
    """

    def __init__(
        self,
        keys: KeysCollection = ("image",),
        enabled: bool = True,
        source_key: str = "source",
        loss_mask_key: str = "loss_mask",
        applied_key: str = "strong_applied",
        ops_key: str = "strong_ops",
        allow_missing_keys: bool = False,
        **strong_kwargs: Any,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.strong = RandStrongAugment(**strong_kwargs)
        self.enabled = enabled
        self.source_key, self.loss_mask_key = source_key, loss_mask_key
        self.applied_key, self.ops_key = applied_key, ops_key

    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> SourceDependentAugmentd:
        super().set_random_state(seed, state)
        propagate_random_state(self, [self.strong])
        return self

    def randomize(self, data: object = None) -> None:
        """Each pseudo frame draws its own strong parameters in :meth:`__call__`."""

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        source = as_tensor(d[self.source_key]).reshape(-1)
        ops = torch.zeros((source.shape[0], len(STRONG_OPS)), dtype=torch.bool)
        keys = list(self.key_iterator(d))
        if self.enabled and keys:
            images = {k: as_tensor(d[k], torch.float32).clone() for k in keys}
            mask = as_tensor(d[self.loss_mask_key], torch.float32).clone() if self.loss_mask_key in d else None
            for n in torch.nonzero(source == SOURCE_PSEUDO).flatten().tolist():
                self.strong.randomize(images[keys[0]].shape[-2:])
                for k in keys:
                    images[k][n] = self.strong(images[k][n:n + 1], randomize=False)[0]
                ops[n] = torch.tensor([self.strong.applied[name] for name in STRONG_OPS])
                box = self.strong.cutout_box
                if box is not None and mask is not None:
                    mask[n, box[0], box[1]] = 0.0
            d.update(images)
            if mask is not None:
                d[self.loss_mask_key] = mask
        d[self.applied_key] = ops.any(dim=1)
        d[self.ops_key] = ops
        return d
