"""Losses: STCN's bootstrapped cross-entropy, the eq. 4 segmentation loss, space-time consistency."""

from __future__ import annotations

from stbv_monai.losses.bootstrapped_ce import BootstrappedBCE, bootstrap_top_p, bootstrapped_mean
from stbv_monai.losses.segmentation import SegmentationLoss
from stbv_monai.losses.stcs import SIMILARITIES, STCSLoss, key_similarity

__all__ = [
    "SIMILARITIES",
    "BootstrappedBCE",
    "STCSLoss",
    "SegmentationLoss",
    "bootstrap_top_p",
    "bootstrapped_mean",
    "key_similarity",
]
