"""Ignite handlers: video metrics, prediction files, tracking glue."""

from __future__ import annotations

from stbv_monai.handlers.checkpoints import SaveNetwork, TrainCheckpoints, latest_checkpoint, prune_checkpoints
from stbv_monai.handlers.ema_relabel import EMARelabel
from stbv_monai.handlers.prediction_writer import PredictionWriter
from stbv_monai.handlers.progress import TrainingProgress
from stbv_monai.handlers.pseudo_label_writer import PseudoLabelWriter
from stbv_monai.handlers.reduce_losses import LOSS_KEYS, ReduceLosses
from stbv_monai.handlers.stop_on_signal import StopOnSignal, install_stop_signals
from stbv_monai.handlers.tracking import StageTracker
from stbv_monai.handlers.validation import PeriodicValidation
from stbv_monai.handlers.video_metrics import METRIC_NAMES, VideoMean, VideoMetricsHandler, video_metrics, video_scores

__all__ = ["EMARelabel", "LOSS_KEYS", "METRIC_NAMES", "PeriodicValidation", "PredictionWriter", "PseudoLabelWriter",
           "ReduceLosses", "SaveNetwork", "StageTracker", "StopOnSignal", "TrainCheckpoints", "TrainingProgress", "VideoMean", "VideoMetricsHandler", "install_stop_signals", "latest_checkpoint", "prune_checkpoints", "video_metrics", "video_scores"]
