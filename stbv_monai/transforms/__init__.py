"""Training-side transforms: clip sampling, weak and strong (source-dependent) augmentation, CutMix.

Every transform is an array class plus a ``...d`` dictionary wrapper holding an instance of it;
random ones are MONAI ``Randomizable`` and pass ``set_random_state`` on to what they hold.
"""

from __future__ import annotations

from stbv_monai.transforms.boxes import sample_box
from stbv_monai.transforms.clip import CLIP_MODES, RandSampleClip, RandSampleClipd, SampleSTCSTriplet
from stbv_monai.transforms.compose import clip_training_transforms
from stbv_monai.transforms.cutmix import RandPseudoCutMix, RandPseudoCutMixd
from stbv_monai.transforms.sda import SourceDependentAugmentd
from stbv_monai.transforms.source import SOURCE_GT, SOURCE_NONE, SOURCE_PSEUDO, check_source, derive_source
from stbv_monai.transforms.strong import (
    STRONG_OPS,
    RandCutOut,
    RandGrayColorJitter,
    RandIsotropicGaussianSmooth,
    RandStrongAugment,
)
from stbv_monai.transforms.weak import RandClipResizedCropd, RandResizedCrop, validation_resize, weak_augmentation

__all__ = [
    "CLIP_MODES",
    "SOURCE_GT",
    "SOURCE_NONE",
    "SOURCE_PSEUDO",
    "STRONG_OPS",
    "RandClipResizedCropd",
    "RandCutOut",
    "RandGrayColorJitter",
    "RandIsotropicGaussianSmooth",
    "RandPseudoCutMix",
    "RandPseudoCutMixd",
    "RandResizedCrop",
    "RandStrongAugment",
    "RandSampleClip",
    "RandSampleClipd",
    "SampleSTCSTriplet",
    "SourceDependentAugmentd",
    "check_source",
    "clip_training_transforms",
    "derive_source",
    "sample_box",
    "validation_resize",
    "weak_augmentation",
]
