"""Ignite engines: video evaluation/inference, the training stages (pretrain, teacher, student) and stage 2.

Names are imported lazily (PEP 562): handlers import ``stbv_monai.engines.distributed``, and the
training stage imports those handlers, so an eager package import would be circular.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "stbv_monai.engines.evaluator": ("PROTOCOLS", "ProtocolReferences", "VideoEvaluator", "choose_references"),
    "stbv_monai.engines.pseudo_label": ("PseudoLabeller", "read_manifest", "video_id"),
    "stbv_monai.engines.run_lock": ("lock_output_dir",),
    "stbv_monai.engines.stage": ("StageSettings", "TrainingStage"),
    "stbv_monai.engines.trainer": ("ClipTrainer",),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
