"""Training-side transforms: clip sampling, weak and strong (source-dependent) augmentation, CutMix,
per-frame deformation of still images (pseudo-videos).

Every transform is an array class plus a ``...d`` dictionary wrapper holding an instance of it;
random ones are MONAI ``Randomizable`` and pass ``set_random_state`` on to what they hold.
"""

from __future__ import annotations

from stbv_monai.transforms.boxes import sample_box
from stbv_monai.transforms.clip import CLIP_MODES, RandSampleClip, RandSampleClipd, SampleSTCSTriplet
from stbv_monai.transforms.compose import clip_training_transforms, still_clip_transforms
from stbv_monai.transforms.cutmix import RandPseudoCutMix, RandPseudoCutMixd
from stbv_monai.transforms.deform import DEFORM_MODES, RandFrameDeform, RandFrameDeformd, RandSpeckle
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
    "DEFORM_MODES",
    "SOURCE_GT",
    "SOURCE_NONE",
    "SOURCE_PSEUDO",
    "STRONG_OPS",
    "RandClipResizedCropd",
    "RandCutOut",
    "RandFrameDeform",
    "RandFrameDeformd",
    "RandGrayColorJitter",
    "RandIsotropicGaussianSmooth",
    "RandPseudoCutMix",
    "RandPseudoCutMixd",
    "RandResizedCrop",
    "RandStrongAugment",
    "RandSampleClip",
    "RandSampleClipd",
    "RandSpeckle",
    "SampleSTCSTriplet",
    "SourceDependentAugmentd",
    "check_source",
    "clip_training_transforms",
    "derive_source",
    "sample_box",
    "still_clip_transforms",
    "validation_resize",
    "weak_augmentation",
]
