"""Evaluation metrics: DAVIS J and F, MONAI Dice and Hausdorff distances, per-video reports."""

from __future__ import annotations

from stbv_monai.metrics.davis import (
    boundary_map,
    boundary_precision_recall_batch,
    contour_accuracy,
    contour_accuracy_batch,
    region_similarity,
    region_similarity_batch,
)
from stbv_monai.metrics.report import format_table, write_reports
from stbv_monai.metrics.video import FrameMetrics, VideoMetrics, evaluate_video, summarise

__all__ = [
    "FrameMetrics",
    "VideoMetrics",
    "boundary_map",
    "boundary_precision_recall_batch",
    "contour_accuracy",
    "contour_accuracy_batch",
    "evaluate_video",
    "format_table",
    "region_similarity",
    "region_similarity_batch",
    "summarise",
    "write_reports",
]
