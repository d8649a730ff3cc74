"""Weak augmentation (the paper's A_w: random resize/crop and flip) and the validation resize.

Every frame of a clip gets its own random crop (so the repeated frame of a bootstrap clip
differs from its twin); the horizontal flip is shared by the whole clip. Images are
interpolated bilinearly, ``label`` and ``loss_mask`` with nearest neighbour, and each frame's
image, label and loss mask share one crop, so they stay aligned (masks use ``"nearest-exact"``,
see :data:`INTERP_MODES`).
"""

from __future__ import annotations

from typing import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import Compose, EnsureTyped, MapTransform, Randomizable, RandFlipd, RandScaleCrop, Resize, Resized
from monai.utils import ensure_tuple, ensure_tuple_rep

from stbv_monai.transforms.utils import as_tensor, propagate_random_state

__all__ = ["RandResizedCrop", "RandClipResizedCropd", "weak_augmentation", "validation_resize"]

CLIP_KEYS = ("image", "label", "loss_mask")
#: Interpolation of image, label, loss mask. ``"nearest-exact"`` samples pixel centres like
#: bilinear does; torch's ``"nearest"`` is off by up to half a source pixel (measured here: a
#: 0.44 px shift of the label against the image at 64 -> 32 px), so masks use the former.
INTERP_MODES = ("bilinear", "nearest-exact", "nearest-exact")


class RandResizedCrop(Randomizable):
    """Crop a random box and resize it to ``spatial_size`` (a 2D ``RandomResizedCrop``).

    Built from MONAI's ``RandScaleCrop`` (box side ``U``-drawn in ``scale`` x frame side,
    independently per axis, position uniform) and ``Resize``. Unlike torchvision's
    ``RandomResizedCrop``, ``scale`` bounds each side rather than the area: ``(0.8, 1.0)`` keeps
    64-100 % of the area with aspect changes of at most 1.25.

    Args:
        spatial_size: output ``(H', W')`` (or one int for both).
        scale: range of the crop side as a fraction of the frame side.
        mode: default interpolation (``"bilinear"`` images, ``"nearest-exact"`` masks).
        anti_aliasing: default Gaussian pre-filter when shrinking (images only).

    Call with ``(C, H, W)``; returns ``(C, H', W')`` float32. One box per :meth:`randomize`.
    """

    def __init__(self, spatial_size: Sequence[int] | int, scale: tuple[float, float] = (0.8, 1.0),
                 mode: str = "bilinear", anti_aliasing: bool = False) -> None:
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {scale}")
        self.cropper = RandScaleCrop(roi_scale=scale[0], max_roi_scale=scale[1], random_center=True, random_size=True)
        self.resizer = Resize(ensure_tuple_rep(spatial_size, 2), mode=mode, anti_aliasing=anti_aliasing)

    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> RandResizedCrop:
        super().set_random_state(seed, state)
        propagate_random_state(self, [self.cropper])
        return self

    def randomize(self, img_size: Sequence[int]) -> None:
        """Draw one crop box for frames of spatial size ``img_size`` ``(H, W)``."""
        self.cropper.randomize(tuple(img_size))

    def __call__(self, img: torch.Tensor, mode: str | None = None, anti_aliasing: bool | None = None,
                 randomize: bool = True) -> torch.Tensor:
        """Crop and resize ``img`` ``(C, H, W)``; ``randomize=False`` reuses the last box."""
        img = as_tensor(img, torch.float32)
        if randomize:
            self.randomize(img.shape[1:])
        out = self.resizer(self.cropper(img, randomize=False), mode=mode, anti_aliasing=anti_aliasing)
        return as_tensor(out, torch.float32)


class RandClipResizedCropd(MapTransform, Randomizable):
    """Dictionary wrapper of :class:`RandResizedCrop` for clips: one box per frame, shared by keys.

    Reads/writes ``keys`` ``(N, H, W)`` -> ``(N, H', W')`` float32: frame ``n`` of every key
    gets the same box, a new box is drawn for each ``n``. ``shared_keys`` (``(M, H, W)``, e.g.
    ``stcs_image``) get a single box for all their frames, which keeps the pixel
    correspondence of the STCS pair ``t, t+1`` that the consistency loss relies on.

    Args:
        keys: per-frame-cropped keys.
        spatial_size: output ``(H', W')``.
        scale: see :class:`RandResizedCrop`.
        mode: interpolation per key of ``keys``.
        anti_aliasing: Gaussian pre-filter (MONAI ``Resize``'s) of non-nearest keys when a crop is
            shrunk; never applied to masks.
        shared_keys: keys cropped with one box for all frames.
        shared_mode: interpolation per key of ``shared_keys``.
        allow_missing_keys: skip absent keys (``loss_mask`` or ``stcs_image`` may be missing).
    """

    def __init__(
        self,
        keys: KeysCollection = CLIP_KEYS,
        spatial_size: Sequence[int] | int = 384,
        scale: tuple[float, float] = (0.8, 1.0),
        mode: Sequence[str] | str = INTERP_MODES,
        anti_aliasing: bool = True,
        shared_keys: KeysCollection = ("stcs_image",),
        shared_mode: Sequence[str] | str = "bilinear",
        allow_missing_keys: bool = True,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.cropper = RandResizedCrop(spatial_size, scale)
        self.mode = ensure_tuple_rep(mode, len(self.keys))
        self.anti_aliasing = anti_aliasing
        self.shared_keys = ensure_tuple(shared_keys)
        self.shared_mode = ensure_tuple_rep(shared_mode, len(self.shared_keys))

    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> RandClipResizedCropd:
        super().set_random_state(seed, state)
        propagate_random_state(self, [self.cropper])
        return self

    def randomize(self, data: object = None) -> None:
        """Boxes are drawn per frame in :meth:`__call__`."""

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        present = [(k, m, self._filtered(m)) for k, m in zip(self.keys, self.mode) if k in d]
        if len(present) < len(self.keys) and not self.allow_missing_keys:
            raise KeyError(f"missing keys {[k for k in self.keys if k not in d]}")
        if present:
            frames = {k: as_tensor(d[k], torch.float32) for k, _, _ in present}
            num, height, width = frames[present[0][0]].shape[-3:]
            out: dict[Hashable, list[torch.Tensor]] = {k: [] for k, _, _ in present}
            for n in range(num):
                self.cropper.randomize((height, width))
                for key, mode, aa in present:
                    out[key].append(self.cropper(frames[key][n:n + 1], mode=mode, anti_aliasing=aa, randomize=False))
            d.update({k: torch.cat(v, dim=0) for k, v in out.items()})
        for key, mode in zip(self.shared_keys, self.shared_mode):
            if key in d:
                d[key] = self.cropper(d[key], mode=mode, anti_aliasing=self._filtered(mode))
        return d

    def _filtered(self, mode: str) -> bool:
        return self.anti_aliasing and not mode.startswith("nearest")


def weak_augmentation(
    spatial_size: Sequence[int] | int,
    scale: tuple[float, float] = (0.8, 1.0),
    flip_prob: float = 0.5,
    keys: KeysCollection = CLIP_KEYS,
    mode: Sequence[str] | str = INTERP_MODES,
    shared_keys: KeysCollection = ("stcs_image",),
    anti_aliasing: bool = True,
) -> Compose:
    """The weak augmentation A_w: per-frame random resized crop, then a clip-wide horizontal flip.

    Args:
        spatial_size: output ``(H', W')`` (multiples of 16 for the network).
        scale: crop side range, see :class:`RandResizedCrop`.
        flip_prob: probability of the left-right flip (no up-down flip: depth runs downwards).
        keys: per-frame keys, ``mode`` their interpolation.
        shared_keys: keys cropped with one box for all their frames (the STCS triplet).
        anti_aliasing: Gaussian pre-filter of images when a crop is shrunk (MONAI's, about 10 ms
            per 480x560 frame on one CPU thread; off saves that where frames are near ``spatial_size``).

    Returns:
        ``Compose`` of :class:`RandClipResizedCropd`, MONAI ``RandFlipd`` (axis W) and
        ``EnsureTyped`` (plain tensors, no metadata).
    """
    keys, shared_keys = ensure_tuple(keys), ensure_tuple(shared_keys)
    all_keys = keys + shared_keys
    return Compose([
        RandClipResizedCropd(keys, spatial_size, scale, mode, anti_aliasing, shared_keys),
        RandFlipd(all_keys, prob=flip_prob, spatial_axis=1, allow_missing_keys=True),
        EnsureTyped(all_keys, data_type="tensor", track_meta=False, allow_missing_keys=True),
    ])


def validation_resize(
    spatial_size: Sequence[int] | int,
    keys: KeysCollection = CLIP_KEYS,
    mode: Sequence[str] | str = INTERP_MODES,
) -> Compose:
    """Deterministic resize of ``keys`` ``(T, H, W)`` to ``spatial_size`` (validation / inference).

    Returns:
        ``Compose`` of MONAI ``Resized`` (anti-aliased bilinear images, nearest masks) and
        ``EnsureTyped``; float32 plain tensors ``(T, H', W')``.
    """
    keys = ensure_tuple(keys)
    modes = ensure_tuple_rep(mode, len(keys))
    return Compose([
        Resized(keys, ensure_tuple_rep(spatial_size, 2), mode=modes, dtype=torch.float32, allow_missing_keys=True,
                anti_aliasing=tuple(not m.startswith("nearest") for m in modes)),
        EnsureTyped(keys, data_type="tensor", track_meta=False, allow_missing_keys=True),
    ])
