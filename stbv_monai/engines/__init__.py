"""Ignite engines: video evaluation/inference, the training stages (pretrain, teacher, student) and stage 2.

Names are imported lazily (PEP 562): handlers import ``stbv_monai.engines.distributed``, and the
training stage imports those handlers, so an eager package import would be circular.
"""

from __future__ import annotations

from stbv_monai.lazy import lazy_exports

_EXPORTS = {
    "stbv_monai.engines.evaluator": ("PROTOCOLS", "ProtocolReferences", "VideoEvaluator", "choose_references"),
    "stbv_monai.engines.pseudo_label": ("PseudoLabeller", "read_manifest", "video_id"),
    "stbv_monai.engines.run_lock": ("lock_output_dir",),
    "stbv_monai.engines.stage": ("StageSettings", "TrainingStage"),
    "stbv_monai.engines.trainer": ("ClipTrainer",),
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
