"""Ignite engines: video evaluation/inference and the three two-shot training stages."""

from __future__ import annotations

from stbv_monai.engines.evaluator import (
    PROTOCOLS,
    VideoEvaluator,
    copy_predictor,
    folder_predictor,
    network_predictor,
    reference_frames,
)
from stbv_monai.engines.pseudo_label import PseudoLabeller, read_manifest, video_id
from stbv_monai.engines.stages import SaveNetwork, TrainCheckpoints, clip_loader, latest_checkpoint, run_stage, unwrap
from stbv_monai.engines.trainer import ClipTrainer

__all__ = [
    "PROTOCOLS",
    "ClipTrainer",
    "SaveNetwork",
    "TrainCheckpoints",
    "clip_loader",
    "latest_checkpoint",
    "run_stage",
    "unwrap",
    "PseudoLabeller",
    "VideoEvaluator",
    "copy_predictor",
    "folder_predictor",
    "network_predictor",
    "read_manifest",
    "reference_frames",
    "video_id",
]
