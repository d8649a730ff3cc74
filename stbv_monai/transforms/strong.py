"""Strong augmentation (the paper's A_s), ST++'s perturbation of one grayscale frame.

ST++ (``dataset/transform.py``) perturbs each pseudo-labelled image with ``ColorJitter(0.5,
0.5, 0.5, 0.25)`` (p = 0.8), ``RandomGrayscale`` (p = 0.2), a Gaussian blur (p = 0.5,
sigma ~ U(0.1, 2.0)) and CutOut (p = 0.5, area U(0.02, 0.4) of the image, aspect U(0.3, 1/0.3),
filled with random values, its mask region ignored in the loss). B-mode ultrasound is
grayscale: saturation, hue and the grayscale conversion are identities on it and are dropped;
brightness and contrast remain. Everything here is built from MONAI transforms:

* brightness: ``RandScaleIntensity`` (``v * (1 + f)``, ``f ~ U(-0.5, 0.5)``), which is
  torchvision's brightness factor ``U(0.5, 1.5)``;
* contrast: ``RandScaleIntensityFixedMean`` (``(v - mean) * (1 + f) + mean``), which is
  torchvision's contrast blend towards the mean of the grayscale image (MONAI's
  ``RandAdjustContrast`` is a gamma curve, not ColorJitter's contrast);
* blur: ``RandGaussianSmooth`` with one sigma for both axes (PIL's blur is isotropic;
  MONAI draws sigma_x and sigma_y independently, so ``randomize`` is overridden);
* CutOut: ``RandCoarseDropout`` with one hole whose box follows ST++'s area/aspect law
  (MONAI draws each side independently, so ``randomize`` is overridden).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from monai.transforms import (
    RandCoarseDropout,
    RandGaussianSmooth,
    Randomizable,
    RandomizableTransform,
    RandScaleIntensity,
    RandScaleIntensityFixedMean,
)

from stbv_monai.transforms.boxes import sample_box
from stbv_monai.transforms.utils import as_tensor, propagate_random_state

__all__ = ["STRONG_OPS", "RandGrayColorJitter", "RandIsotropicGaussianSmooth", "RandCutOut", "RandStrongAugment"]

#: Names of the strong operations, in the order they are applied and recorded.
STRONG_OPS = ("jitter", "blur", "cutout")


class RandGrayColorJitter(RandomizableTransform):
    """ColorJitter for grayscale frames: brightness and contrast in random order, clamped to [0, 1].

    Args:
        prob: probability of jittering at all (ST++: 0.8).
        brightness: factor drawn from ``U(1 - brightness, 1 + brightness)``.
        contrast: factor drawn from ``U(1 - contrast, 1 + contrast)`` around the frame mean.

    Call with ``(C, H, W)`` in [0, 1]; returns ``(C, H, W)`` float32 in [0, 1].
    """

    def __init__(self, prob: float = 0.8, brightness: float = 0.5, contrast: float = 0.5) -> None:
        RandomizableTransform.__init__(self, prob)
        self.brightness = RandScaleIntensity(factors=brightness, prob=1.0)
        self.contrast = RandScaleIntensityFixedMean(prob=1.0, factors=contrast, fixed_mean=True)
        self._order: tuple[int, ...] = (0, 1)

    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> RandGrayColorJitter:
        super().set_random_state(seed, state)
        propagate_random_state(self, [self.brightness, self.contrast])
        return self

    def randomize(self, data: object = None) -> None:
        super().randomize(None)
        if self._do_transform:
            self._order = tuple(int(i) for i in self.R.permutation(2))
            self.brightness.randomize(None)
            self.contrast.randomize(None)

    def __call__(self, img: torch.Tensor, randomize: bool = True) -> torch.Tensor:
        img = as_tensor(img, torch.float32)
        if randomize:
            self.randomize()
        if not self._do_transform:
            return img
        ops = (self.brightness, self.contrast)
        for i in self._order:
            img = as_tensor(ops[i](img, randomize=False), torch.float32).clamp_(0.0, 1.0)
        return img


class RandIsotropicGaussianSmooth(RandGaussianSmooth):
    """MONAI's ``RandGaussianSmooth`` with one sigma ``U(sigma)`` for every axis (PIL-style blur).

    Args:
        sigma: range of the blur sigma in pixels (ST++: ``(0.1, 2.0)``).
        prob: probability of blurring (ST++: 0.5).
    """

    def __init__(self, sigma: tuple[float, float] = (0.1, 2.0), prob: float = 0.5) -> None:
        super().__init__(sigma_x=sigma, sigma_y=sigma, sigma_z=sigma, prob=prob)

    def randomize(self, data: object = None) -> None:
        super().randomize(data)
        self.y = self.z = self.x


class RandCutOut(RandCoarseDropout):
    """MONAI's ``RandCoarseDropout`` with ST++'s CutOut box: one hole, area and aspect drawn.

    The hole covers ``U(area) * H * W`` pixels with aspect ``U(ratio)`` and is filled with
    per-pixel values ``U(fill_value)``. After a call, :attr:`box` holds ``(rows, cols)`` of the
    hole (or ``None``) so a dictionary transform can ignore it in the loss.

    Args:
        prob: probability of a hole (ST++: 0.5).
        area: range of the hole area as a fraction of the frame.
        ratio: range of the hole aspect ratio.
        fill_value: range of the random fill (frames are in [0, 1]).
    """

    def __init__(self, prob: float = 0.5, area: tuple[float, float] = (0.02, 0.4),
                 ratio: tuple[float, float] = (0.3, 1 / 0.3), fill_value: tuple[float, float] = (0.0, 1.0)) -> None:
        super().__init__(holes=1, spatial_size=1, fill_value=fill_value, prob=prob)
        self.area = area
        self.ratio = ratio

    def randomize(self, img_size: Sequence[int]) -> None:
        RandomizableTransform.randomize(self, None)
        self.hole_coords = []
        if self._do_transform:
            rows, cols = sample_box(self.R, int(img_size[-2]), int(img_size[-1]), self.area, self.ratio)
            self.hole_coords = [(slice(None), rows, cols)]

    @property
    def box(self) -> tuple[slice, slice] | None:
        """``(rows, cols)`` of the last hole, ``None`` when the last call cut nothing."""
        if not self._do_transform or not self.hole_coords:
            return None
        return self.hole_coords[0][1], self.hole_coords[0][2]


class RandStrongAugment(Randomizable):
    """ST++'s strong perturbation of one frame: jitter (p 0.8) -> blur (p 0.5) -> CutOut (p 0.5).

    After each call :attr:`applied` maps every name of :data:`STRONG_OPS` to whether that
    operation touched the frame, and :attr:`cutout_box` gives the CutOut hole (or ``None``).

    Args:
        jitter_prob, brightness, contrast: see :class:`RandGrayColorJitter`.
        blur_prob, blur_sigma: see :class:`RandIsotropicGaussianSmooth`.
        cutout_prob, cutout_area, cutout_ratio, cutout_fill: see :class:`RandCutOut`.

    Call with one frame ``(H, W)`` or ``(1, H, W)`` in [0, 1]; returns the same shape, float32.
    """

    def __init__(
        self,
        jitter_prob: float = 0.8,
        brightness: float = 0.5,
        contrast: float = 0.5,
        blur_prob: float = 0.5,
        blur_sigma: tuple[float, float] = (0.1, 2.0),
        cutout_prob: float = 0.5,
        cutout_area: tuple[float, float] = (0.02, 0.4),
        cutout_ratio: tuple[float, float] = (0.3, 1 / 0.3),
        cutout_fill: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        self.jitter = RandGrayColorJitter(jitter_prob, brightness, contrast)
        self.blur = RandIsotropicGaussianSmooth(blur_sigma, blur_prob)
        self.cutout = RandCutOut(cutout_prob, cutout_area, cutout_ratio, cutout_fill)
        self.applied: dict[str, bool] = dict.fromkeys(STRONG_OPS, False)

    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> RandStrongAugment:
        super().set_random_state(seed, state)
        propagate_random_state(self, [self.jitter, self.blur, self.cutout])
        return self

    def randomize(self, img_size: Sequence[int]) -> None:
        """Draw every operation's parameters for a frame of spatial size ``img_size`` ``(H, W)``."""
        self.jitter.randomize()
        self.blur.randomize()
        self.cutout.randomize(img_size)
        ops = (self.jitter, self.blur, self.cutout)
        self.applied = {name: bool(op._do_transform) for name, op in zip(STRONG_OPS, ops)}

    @property
    def cutout_box(self) -> tuple[slice, slice] | None:
        """``(rows, cols)`` of the last CutOut hole, ``None`` if there was none."""
        return self.cutout.box

    def __call__(self, img: torch.Tensor, randomize: bool = True) -> torch.Tensor:
        frame = as_tensor(img, torch.float32).clone()
        squeeze = frame.dim() == 2
        if squeeze:
            frame = frame[None]
        if frame.dim() != 3 or frame.shape[0] != 1:
            raise ValueError(f"RandStrongAugment takes one frame (H, W) or (1, H, W), got {tuple(frame.shape)}")
        if randomize:
            self.randomize(frame.shape[1:])
        frame = self.jitter(frame, randomize=False)
        frame = as_tensor(self.blur(frame, randomize=False), torch.float32)
        frame = as_tensor(self.cutout(frame, randomize=False), torch.float32)
        return frame[0] if squeeze else frame
