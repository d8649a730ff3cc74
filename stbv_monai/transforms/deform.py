"""Per-frame random deformation: the copies of a still image become the frames of a pseudo-video.

STCN's stage 0 pretrains the memory network on still images: a clip is three copies of one
image (and mask), each deformed on its own, so frames 2 and 3 must be segmented from frame 1's
mask as in a real video (STCN ``dataset/static_dataset.py``: per frame a random affine, a thin
plate spline warp with 2 % of the side and a colour jitter, the first frame included). Here one
frame gets an affine (rotation, shear, isotropic scale, translation), a smooth elastic warp, and
on the image only a gamma, a gain and fresh multiplicative speckle. The image and every mask of a
frame are resampled through one grid: images bilinearly, masks with nearest neighbour (values
stay in {0, 1}), zeros outside the frame (the black outside a B-mode sector).

MONAI's ``Rand2DElastic`` is not used as a whole: its array form re-draws the warp on every call
(so an image and its mask cannot share a draw), its bicubic upsampling of the coordinate grid is
not the identity even at zero magnitude (measured: 1.0 px mean, 1.5 px max coordinate error at
spacing 32 in MONAI 1.6), and its spacing and translation are in pixels. The grid is built here
from MONAI's ``create_grid`` and ``RandAffineGrid`` (rotation, shear) plus a smooth displacement,
then applied with MONAI's ``Resample``; the intensity changes are MONAI's ``RandAdjustContrast``
and ``RandScaleIntensity`` and :class:`RandSpeckle`.
"""

from __future__ import annotations

import math
from typing import Any, Hashable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.transforms import (
    GaussianSmooth,
    MapTransform,
    RandAdjustContrast,
    RandAffineGrid,
    Randomizable,
    RandomizableTransform,
    RandScaleIntensity,
    Resample,
)
from monai.transforms.utils import create_grid
from monai.utils import MAX_SEED, ensure_tuple_rep

from stbv_monai.transforms.utils import as_tensor, propagate_random_state
from stbv_monai.transforms.weak import CLIP_KEYS

__all__ = ["DEFORM_MODES", "RandSpeckle", "RandFrameDeform", "RandFrameDeformd"]

#: Resampling of ``image``, ``label``, ``loss_mask``. ``grid_sample``'s ``"nearest"`` rounds the
#: sampling point to the closest pixel centre, so it has no half-pixel offset (unlike
#: ``interpolate``'s, see ``weak.INTERP_MODES``); ``"nearest-exact"`` is accepted and mapped to it.
DEFORM_MODES = ("bilinear", "nearest", "nearest")


class RandSpeckle(RandomizableTransform):
    """Multiplicative speckle: ``v * max(0, 1 + s * n)``, ``n`` a smoothed unit-variance Gaussian field.

    Multiplicative because B-mode speckle is the interference of sub-resolution scatterers: its
    amplitude scales with the local echo strength (Rayleigh statistics, standard deviation
    proportional to the mean), so anechoic regions (cysts, hypoechoic lesion interiors, the black
    outside the sector) stay dark while bright tissue turns grainy; additive noise would fill the
    dark lesions and wash out the boundary the mask follows. (After the scanner's log compression
    speckle is closer to additive; the multiplicative model is the usual approximation on display
    images and keeps what matters here: no grain where there is no echo.) Smoothed because a grain is
    the size of the resolution cell, a few pixels, not one. A fresh field per frame mimics the
    decorrelation of speckle between real frames, so frames cannot be matched by identical texture.

    Args:
        prob: probability of adding speckle.
        std: range of ``s``, the standard deviation of the multiplicative factor.
        sigma: grain size, the Gaussian sigma in pixels at the resolution the transform runs at.

    Call with ``(C, H, W)``; returns ``(C, H, W)`` float32 (one field for all channels).
    """

    def __init__(self, prob: float = 1.0, std: tuple[float, float] = (0.0, 0.15), sigma: float = 1.0) -> None:
        RandomizableTransform.__init__(self, prob)
        if not 0 <= std[0] <= std[1]:
            raise ValueError(f"std must satisfy 0 <= min <= max, got {std}")
        self.std = std
        self.smooth = GaussianSmooth(sigma) if sigma > 0 else None
        self._factor: torch.Tensor | None = None

    def randomize(self, img_size: Sequence[int]) -> None:
        """Draw the multiplicative field for frames of spatial size ``img_size`` ``(H, W)``."""
        super().randomize(None)
        if not self._do_transform:
            return
        # torch's sampler, seeded from ``self.R``: numpy's legacy normal costs ~4 ms per 384 x 384 frame
        generator = torch.Generator().manual_seed(int(self.R.randint(MAX_SEED, dtype="uint32")))
        noise = torch.randn((1, *(int(s) for s in img_size)), generator=generator)
        if self.smooth is not None:
            noise = as_tensor(self.smooth(noise), torch.float32)
            noise = noise / noise.std().clamp_min(1e-6)  # smoothing shrinks the variance; s stays the std
        self._factor = (1.0 + float(self.R.uniform(*self.std)) * noise).clamp_min_(0.0)

    def __call__(self, img: torch.Tensor, randomize: bool = True) -> torch.Tensor:
        """Multiply ``img`` ``(C, H, W)`` by the field (``randomize=False`` reuses the last one)."""
        img = as_tensor(img, torch.float32)
        if randomize:
            self.randomize(img.shape[1:])
        if not self._do_transform or self._factor is None:
            return img
        return img * self._factor


class RandFrameDeform(RandomizableTransform):
    """One random deformation of one frame: affine + elastic warp, and intensity changes of the image.

    Geometry (one grid per :meth:`randomize`, shared by the image and all masks of the frame):
    a smooth displacement (Gaussian offsets on control points ``elastic_spacing`` x side apart,
    bicubic in between), then MONAI's ``RandAffineGrid`` rotation and shear, then one scale for
    both axes (so the aspect ratio, which is physical in ultrasound, is kept) and a translation
    drawn as a fraction of each side. Sizes are relative, so the same defaults suit any resolution.

    Args:
        prob: probability of deforming at all (otherwise the identity).
        rotate: rotation range in degrees, ``U(-rotate, rotate)`` (the probe's depth axis stays
            roughly vertical; STCN uses 20 on natural images).
        shear: shear factor range per axis, ``U(-shear, shear)`` (0.1 is about 6 degrees).
        scale: ``1 + U(-scale, scale)``, for both axes.
        translate: shift ``U(-translate, translate)`` x side, per axis.
        elastic_spacing: control-point spacing as a fraction of the side (0.25: 5 x 5 points,
            deformations of lesion scale rather than speckle scale).
        elastic_magnitude: range of the offsets' standard deviation as a fraction of the side
            (STCN's thin plate spline uses 0.02).
        gain: brightness factor ``1 + U(-gain, gain)`` (MONAI ``RandScaleIntensity``).
        gamma: gamma range of MONAI ``RandAdjustContrast`` (log-symmetric by default).
        speckle_std, speckle_sigma: see :class:`RandSpeckle`.

    Call with an image ``(C, H, W)`` in [0, 1] and masks ``(C_i, H, W)``; returns the image
    (float32, clamped to [0, 1]) and the masks (float32, values taken from the input's).
    """

    def __init__(
        self,
        prob: float = 1.0,
        rotate: float = 15.0,
        shear: float = 0.1,
        scale: float = 0.1,
        translate: float = 0.1,
        elastic_spacing: float = 0.25,
        elastic_magnitude: tuple[float, float] = (0.0, 0.02),
        gain: float = 0.2,
        gamma: tuple[float, float] = (0.8, 1.25),
        speckle_std: tuple[float, float] = (0.0, 0.15),
        speckle_sigma: float = 1.0,
    ) -> None:
        RandomizableTransform.__init__(self, prob)
        if not 0 < elastic_spacing <= 1:
            raise ValueError(f"elastic_spacing must be in (0, 1], got {elastic_spacing}")
        self.scale, self.translate = scale, translate
        self.elastic_spacing, self.elastic_magnitude = elastic_spacing, elastic_magnitude
        self.affine_grid = RandAffineGrid(rotate_range=math.radians(rotate), shear_range=(shear, shear))
        self.contrast = RandAdjustContrast(prob=1.0, gamma=gamma)
        self.gain = RandScaleIntensity(factors=gain, prob=1.0)
        self.speckle = RandSpeckle(1.0, speckle_std, speckle_sigma)
        self.resampler = Resample(padding_mode="zeros", dtype=torch.float32)
        self._grid: torch.Tensor | None = None

    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> RandFrameDeform:
        super().set_random_state(seed, state)
        propagate_random_state(self, [self.affine_grid, self.contrast, self.gain, self.speckle])
        return self

    def randomize(self, img_size: Sequence[int]) -> None:
        """Draw one deformation (geometry and intensity) for frames of spatial size ``img_size`` ``(H, W)``."""
        super().randomize(None)
        if not self._do_transform:
            return
        size = (int(img_size[0]), int(img_size[1]))
        self._grid = self._draw_grid(size)
        self.contrast.randomize()
        self.gain.randomize()
        self.speckle.randomize(size)

    def _draw_grid(self, size: tuple[int, int]) -> torch.Tensor:
        """Sampling grid ``(3, H, W)`` in MONAI's centred pixel coordinates (``Resample``'s input)."""
        grid = create_grid(size, backend="torch", dtype=torch.float32)
        grid[:2] += self._displacement(size)
        grid = as_tensor(self.affine_grid(grid=grid), torch.float32)
        zoom = 1.0 + self.R.uniform(-self.scale, self.scale)
        shift = [self.R.uniform(-self.translate, self.translate) * side for side in size]
        grid[:2] = grid[:2] * zoom + torch.tensor(shift, dtype=torch.float32).view(2, 1, 1)
        return grid

    def _displacement(self, size: tuple[int, int]) -> torch.Tensor:
        """Smooth ``(2, H, W)`` displacement in pixels: Gaussian offsets on a coarse grid, bicubic in between."""
        points = round(1.0 / self.elastic_spacing) + 1
        magnitude = self.R.uniform(*self.elastic_magnitude)
        offsets = self.R.standard_normal((1, 2, points, points)) * magnitude
        sides = torch.tensor(size, dtype=torch.float32).view(1, 2, 1, 1)
        offsets = torch.from_numpy(offsets.astype(np.float32)) * sides
        return F.interpolate(offsets, size=size, mode="bicubic", align_corners=True)[0]

    def warp(self, img: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
        """Resample ``img`` ``(C, H, W)`` through the last grid (zeros outside the frame)."""
        img = as_tensor(img, torch.float32)
        if not self._do_transform or self._grid is None:
            return img
        mode = "nearest" if mode.startswith("nearest") else mode
        return as_tensor(self.resampler(img, self._grid, mode=mode), torch.float32)

    def perturb(self, img: torch.Tensor) -> torch.Tensor:
        """The last draw's intensity changes of an image ``(C, H, W)``: gamma, gain, speckle, clamp to [0, 1]."""
        img = as_tensor(img, torch.float32)
        if not self._do_transform:
            return img
        img = as_tensor(self.contrast(img, randomize=False), torch.float32)
        img = as_tensor(self.gain(img, randomize=False), torch.float32)
        return self.speckle(img, randomize=False).clamp_(0.0, 1.0)

    def __call__(
        self, img: torch.Tensor, masks: Sequence[torch.Tensor] = (), randomize: bool = True
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Deform ``img`` ``(C, H, W)`` (bilinear + intensity) and ``masks`` (nearest) with one draw."""
        img = as_tensor(img, torch.float32)
        if img.dim() != 3:
            raise ValueError(f"RandFrameDeform takes (C, H, W) frames, got {tuple(img.shape)}")
        if randomize:
            self.randomize(img.shape[1:])
        return self.perturb(self.warp(img, "bilinear")), [self.warp(m, "nearest") for m in masks]


class RandFrameDeformd(MapTransform, Randomizable):
    """Dictionary wrapper of :class:`RandFrameDeform` for clips: a new deformation for every frame.

    Reads/writes ``keys`` ``(N, H, W)`` -> ``(N, H, W)`` float32 plain tensors; frame ``n`` of
    every key shares one draw. Keys resampled with a non-nearest ``mode`` are images and also get
    the intensity changes; nearest keys are masks. ``loss_mask`` (nearest, zero padding) comes out
    as the warped loss mask times the warped ones-map, i.e. 0 wherever the frame was padded, so
    padding never reaches the loss; when it is absent nothing is created (the clip sampler always
    writes one; a caller without it trains on every pixel, padding as background). Other keys
    (``source``, ``frame_index``) pass through.

    Args:
        keys: per-frame keys, ``mode`` their resampling (:data:`DEFORM_MODES`).
        prob: probability of deforming each frame.
        keep_first: leave frame 0 (the reference whose mask the network is given) undeformed.
            Off by default, as in STCN: the reference of a real clip is no cleaner than the
            frames read from memory, and an always-pristine frame 0 would be a cue the
            network could learn that video never offers.
        allow_missing_keys: skip absent keys (``loss_mask`` may be missing).
        deform_kwargs: arguments of :class:`RandFrameDeform` (``rotate``, ``shear``, ...).
    """

    def __init__(
        self,
        keys: KeysCollection = CLIP_KEYS,
        mode: Sequence[str] | str = DEFORM_MODES,
        prob: float = 1.0,
        keep_first: bool = False,
        allow_missing_keys: bool = True,
        **deform_kwargs: Any,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.mode = ensure_tuple_rep(mode, len(self.keys))
        self.keep_first = keep_first
        self.deformer = RandFrameDeform(prob=prob, **deform_kwargs)

    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> RandFrameDeformd:
        super().set_random_state(seed, state)
        propagate_random_state(self, [self.deformer])
        return self

    def randomize(self, data: object = None) -> None:
        """Deformations are drawn per frame in :meth:`__call__`."""

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        present = [(k, m) for k, m in zip(self.keys, self.mode) if k in d]
        if len(present) < len(self.keys) and not self.allow_missing_keys:
            raise KeyError(f"missing keys {[k for k in self.keys if k not in d]}")
        if not present:
            return d
        clips = {k: as_tensor(d[k], torch.float32) for k, _ in present}
        num, height, width = clips[present[0][0]].shape[-3:]
        out: dict[Hashable, list[torch.Tensor]] = {k: [] for k, _ in present}
        for n in range(num):
            if n == 0 and self.keep_first:
                for key, _ in present:
                    out[key].append(clips[key][:1])
                continue
            self.deformer.randomize((height, width))
            for key, mode in present:
                frame = self.deformer.warp(clips[key][n:n + 1], mode)
                out[key].append(frame if mode.startswith("nearest") else self.deformer.perturb(frame))
        d.update({k: torch.cat(v, dim=0) for k, v in out.items()})
        return d
