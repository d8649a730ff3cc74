"""Write stage 2's pseudo-labels, one video per evaluator iteration, atomically and resumably.

The pseudo-labeller is a :class:`~stbv_monai.engines.VideoEvaluator` of the training videos
(labelled frames as references, i.e. quadro-inference) with this handler attached: each video's
set Ŷ = Yˡ ∪ Ŷᵘ (the teacher's thresholded prediction, the labelled frames replaced by their
ground truth) is written as a mask video, then a small record with the frame sources and the
teacher's per-frame confidence. The record is written last, so a killed run resumes at the first
video without one (:class:`~stbv_monai.engines.PseudoLabeller` decides what is pending).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from ignite.engine import Engine, Events

from stbv_monai.constants import SOURCE_GT, SOURCE_PSEUDO
from stbv_monai.data.io import atomic_path, write_mask
from stbv_monai.inference.confidence import frame_confidence

__all__ = ["PseudoLabelWriter"]

Scorer = Callable[[np.ndarray, np.ndarray, Sequence[int]], dict[str, float]]


class PseudoLabelWriter:
    """Write ``<id>.nii.gz`` (the pseudo-label video) and ``<id>.json`` (its record) per video.

    Args:
        output_dir: the stage's folder.
        scorer: optional ``scorer(pseudo, gt, labelled) -> dict`` scoring the pseudo-labels against
            the full label file (when it holds more than the labelled frames).
    """

    def __init__(self, output_dir: str | os.PathLike, scorer: Scorer | None = None) -> None:
        self.output_dir, self.scorer = Path(output_dir), scorer

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> dict[str, Any]:
        out = engine.state.output
        labelled, gt = list(out["labelled_frames"]), out["gt"]
        mask = out["pred"].copy()
        mask[labelled] = gt[labelled]
        source = np.full(len(mask), SOURCE_PSEUDO, np.uint8)
        source[labelled] = SOURCE_GT
        record = {
            "id": out["name"],
            "image": str(Path(out["image_path"]).resolve()),
            "label": str(write_mask(self.output_dir / f"{out['name']}.nii.gz", mask, spacing=out["spacing"]).resolve()),
            "gt_label": str(Path(out["label_path"]).resolve()),
            "labelled_frames": labelled,
            "source": source.tolist(),
            "confidence": [round(float(c), 5) for c in frame_confidence(out["probs"].cpu())],
        }
        if self.scorer is not None:
            record["score"] = self.scorer(mask, gt, labelled)
        with atomic_path(self.output_dir / f"{out['name']}.json") as tmp:
            tmp.write_text(json.dumps(record, indent=1))
        return record
