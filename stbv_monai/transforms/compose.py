"""Ready-made transform chains for the three training stages."""

from __future__ import annotations

from typing import Any, Sequence

from monai.transforms import Compose

from stbv_monai.transforms.clip import RandSampleClipd
from stbv_monai.transforms.sda import SourceDependentAugmentd
from stbv_monai.transforms.weak import weak_augmentation

__all__ = ["clip_training_transforms"]


def clip_training_transforms(
    spatial_size: Sequence[int] | int,
    mode: str = "window",
    num_frames: int = 3,
    max_skip: int = 10,
    reverse_prob: float = 0.0,
    full_supervision: bool = False,
    stcs: bool = False,
    stcs_range: int | None = None,
    sda: bool = False,
    scale: tuple[float, float] = (0.8, 1.0),
    flip_prob: float = 0.5,
    anti_aliasing: bool = True,
    strong_kwargs: dict[str, Any] | None = None,
) -> Compose:
    """Video sample -> augmented training clip: :class:`RandSampleClipd` -> weak aug -> (SDA).

    Stage presets: teacher ``mode="bootstrap", stcs=True``; student ``mode="window",
    stcs=True, sda=True`` on the pseudo-label set; full supervision ``mode="window",
    full_supervision=True``. Batch-level CutMix (:class:`RandPseudoCutMixd`) comes after
    collation and is not part of this chain.

    Args:
        spatial_size: clip frame size ``(H', W')`` (multiples of 16).
        mode, num_frames, max_skip, reverse_prob, full_supervision, stcs, stcs_range: see
            :class:`RandSampleClipd`.
        sda: add :class:`SourceDependentAugmentd` (strong perturbation of pseudo frames).
        scale, flip_prob, anti_aliasing: see :func:`weak_augmentation`.
        strong_kwargs: arguments of :class:`RandStrongAugment`.
    """
    chain = [
        RandSampleClipd(num_frames=num_frames, mode=mode, max_skip=max_skip, reverse_prob=reverse_prob,
                    full_supervision=full_supervision, stcs=stcs, stcs_range=stcs_range),
        weak_augmentation(spatial_size, scale=scale, flip_prob=flip_prob, anti_aliasing=anti_aliasing),
    ]
    if sda:
        chain.append(SourceDependentAugmentd(**(strong_kwargs or {})))
    return Compose(chain)
