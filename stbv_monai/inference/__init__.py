"""Video propagation: memory bank, reference scheduling, the inference core, a MONAI Inferer."""

from __future__ import annotations

from stbv_monai.inference.core import PropagationStats, propagate
from stbv_monai.inference.inferer import CopyReferenceInferer, FolderInferer, VideoPropagationInferer
from stbv_monai.inference.memory_bank import MemoryBank
from stbv_monai.inference.schedule import BACKWARD, FORWARD, Pass, assign_sources, plan_passes

__all__ = [
    "propagate",
    "PropagationStats",
    "VideoPropagationInferer",
    "CopyReferenceInferer",
    "FolderInferer",
    "MemoryBank",
    "Pass",
    "assign_sources",
    "plan_passes",
    "FORWARD",
    "BACKWARD",
]
