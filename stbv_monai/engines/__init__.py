"""Ignite engines: video evaluation/inference, the training stages (pretrain, teacher, student) and stage 2."""

from __future__ import annotations

from stbv_monai.engines.evaluator import PROTOCOLS, ProtocolReferences, VideoEvaluator, choose_references
from stbv_monai.engines.pseudo_label import PseudoLabeller, read_manifest, video_id
from stbv_monai.engines.run_lock import lock_output_dir
from stbv_monai.engines.stage import StageSettings, TrainingStage
from stbv_monai.engines.trainer import ClipTrainer

__all__ = [
    "PROTOCOLS",
    "ProtocolReferences",
    "choose_references",
    "ClipTrainer",
    "lock_output_dir",
    "PseudoLabeller",
    "VideoEvaluator",
    "read_manifest",
    "StageSettings",
    "TrainingStage",
    "video_id",
]
