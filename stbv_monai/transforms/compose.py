"""Ready-made transform chains for the three training stages (and STCN's still-image stage 0)."""

from __future__ import annotations

from typing import Any, Sequence

from monai.transforms import Compose

from stbv_monai.transforms.clip import RandSampleClipd
from stbv_monai.transforms.deform import RandFrameDeformd
from stbv_monai.transforms.sda import SourceDependentAugmentd
from stbv_monai.transforms.weak import weak_augmentation

__all__ = ["clip_training_transforms", "still_clip_transforms"]


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


def still_clip_transforms(
    spatial_size: Sequence[int] | int,
    num_frames: int = 3,
    scale: tuple[float, float] = (0.8, 1.0),
    flip_prob: float = 0.5,
    deform_kwargs: dict[str, Any] | None = None,
    anti_aliasing: bool = True,
) -> Compose:
    """Still image + mask -> pseudo-video clip (STCN's stage 0): bootstrap copies -> weak aug -> deformation.

    A still is a 1-frame video (``image``/``label`` ``(1, H, W)``, ``labelled_frames=[0]``):
    :class:`RandSampleClipd` (``"bootstrap"``) repeats it ``num_frames`` times, the weak
    augmentation crops every copy on its own, and :class:`RandFrameDeformd` deforms every frame
    on its own, so frames 2.. must be segmented from frame 1's mask as in a video. The deformation
    runs after the resize, at the training resolution (its cost does not grow with the still).
    Keys, shapes and dtypes are those of ``clip_training_transforms(spatial_size, mode="bootstrap")``.

    Args:
        spatial_size: clip frame size ``(H', W')`` (multiples of 16).
        num_frames: ``N``, frames per clip.
        scale, flip_prob, anti_aliasing: see :func:`weak_augmentation`.
        deform_kwargs: arguments of :class:`RandFrameDeformd` (``prob``, ``keep_first``, and those
            of :class:`RandFrameDeform`).
    """
    return Compose([
        RandSampleClipd(num_frames=num_frames, mode="bootstrap", stcs=False),
        weak_augmentation(spatial_size, scale=scale, flip_prob=flip_prob, anti_aliasing=anti_aliasing),
        RandFrameDeformd(**(deform_kwargs or {})),
    ])
