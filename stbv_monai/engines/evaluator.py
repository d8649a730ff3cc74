"""A MONAI ``Evaluator`` that segments (or reads) one whole video per iteration.

MONAI's ``SupervisedEvaluator`` runs a network on batches of independent samples; a video is
segmented by a stateful time loop from its reference frames, and is scored with per-video
protocol rules (references left out), so the unit of work here is one video and this subclass
overrides ``_iteration`` only. How a video is predicted is its ``inferer`` (propagation, the
copy baseline, a folder of predictions: :mod:`stbv_monai.inference.inferer`); the scores are
Ignite metrics (:func:`~stbv_monai.handlers.video_metrics`); what is done with each prediction
is up to the handlers: reports (:class:`~stbv_monai.handlers.VideoMetricsHandler`), files
(:class:`~stbv_monai.handlers.PredictionWriter`), progress, tracking. Inference, evaluation
and the validation of the training stages are this one engine with different parts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from ignite.metrics import Metric
from monai.engines import Evaluator
from monai.inferers import Inferer

from stbv_monai.data.datalist import load_video_pair
from stbv_monai.data.ids import entry_id
from stbv_monai.data.io import video_format
from stbv_monai.errors import InputError

__all__ = ["PROTOCOLS", "ProtocolReferences", "VideoEvaluator", "choose_references"]

logger = logging.getLogger(__name__)

#: ``labelled``: every labelled frame is a reference (two-shot); ``first_frame``: DAVIS's
#: semi-supervised protocol, the ground truth of the first frame where the lesion appears.
PROTOCOLS = ("labelled", "first_frame")


@dataclass(frozen=True)
class ProtocolReferences:
    """The frames a protocol gives as references, the frames it leaves unscored, and the rule used.

    ``rule``: ``labelled_frames``; ``first_lesion_frame`` (DAVIS); or ``first_labelled_frame``, the
    fallback when the label file holds only the labelled frames, so the lesion's first appearance
    is unknown.
    """

    frames: list[int]
    excluded: list[int]
    rule: str


def choose_references(labelled: Sequence[int], protocol: str, label: np.ndarray | None = None) -> ProtocolReferences:
    """Pick the references of one video under ``protocol``.

    ``first_frame`` follows DAVIS and the paper's eq. 1: the reference is the first frame whose
    ground truth shows the lesion, and the frames before it are not scored (the method learns of
    the lesion only there). That needs a label file with every frame; when every non-empty label
    frame is a labelled one, the first labelled frame is used instead and ``rule`` says so.
    """
    if protocol not in PROTOCOLS:
        raise InputError("protocol", f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    frames = sorted(int(t) for t in labelled)
    if protocol == "labelled":
        return ProtocolReferences(frames, [], "labelled_frames")
    present = [] if label is None else np.flatnonzero(label.reshape(len(label), -1).any(axis=1)).tolist()
    if any(t not in set(frames) for t in present):
        first, rule = int(present[0]), "first_lesion_frame"
    else:
        first, rule = frames[0], "first_labelled_frame"
    return ProtocolReferences([first], list(range(first)), rule)


class VideoEvaluator(Evaluator):
    """Segment one datalist entry per iteration; metrics and handlers consume ``engine.state.output``.

    ``state.output`` holds ``name`` (the video's id), ``probs`` (T, H, W) float tensor, ``pred`` and ``gt``
    (T, H, W) uint8 arrays, ``references`` and ``excluded`` (frame indices), ``reference_rule`` (see
    :class:`ProtocolReferences`), ``spacing`` (or ``None``), ``frames`` (T, H, W)
    float array, ``image_path``, ``label_path``, ``labelled_frames`` (the entry's, whatever the
    protocol) and ``format`` (the input's format family).

    Args:
        inferer: ``inferer(frames, network, references=..., entry=...) -> (T, H, W)`` probabilities.
        val_data_loader: the datalist entries to segment (one per iteration).
        network: what ``inferer`` runs (``None`` for inferers without one).
        device: where frames go.
        protocol: which labelled frames are references (see :data:`PROTOCOLS`).
        threshold: probability above which a pixel is lesion.
        metrics: Ignite metrics by name; ``JF`` (or else the first) is the key metric
            (:func:`~stbv_monai.handlers.video_metrics` gives the standard set); ``None``: no scores.
        val_handlers, kwargs: as for :class:`monai.engines.Evaluator`.
    """

    def __init__(self, inferer: Inferer, val_data_loader: Iterable[Mapping[str, Any]],
                 network: torch.nn.Module | None = None, device: torch.device | str = "cpu",
                 protocol: str = "labelled", threshold: float = 0.5, metrics: Mapping[str, Metric] | None = None,
                 val_handlers: Sequence[Any] | None = None, **kwargs: Any) -> None:
        choose_references([0], protocol)  # validate early
        others = dict(metrics or {})
        first = "JF" if "JF" in others else next(iter(others), None)
        key = {first: others.pop(first)} if first is not None else None
        super().__init__(device=torch.device(device), val_data_loader=list(val_data_loader), key_val_metric=key,
                         additional_metrics=others or None, val_handlers=val_handlers, decollate=False, **kwargs)
        self.inferer, self.network = inferer, network
        self.protocol, self.threshold = protocol, threshold

    def _iteration(self, engine: VideoEvaluator, entry: Mapping[str, Any]) -> dict[str, Any]:  # type: ignore[override]
        pair = load_video_pair(dict(entry))
        choice = choose_references(pair["labelled_frames"], self.protocol, pair["label"])
        refs = choice.frames
        if choice.rule == "first_labelled_frame":
            logger.info("%s: the label file holds only the labelled frames, so the first-frame protocol uses the "
                        "first labelled frame (%d), not the lesion's first appearance", entry["image"], refs[0])
        device = engine.state.device
        frames = torch.from_numpy(pair["image"]).to(device)
        masks = {t: torch.from_numpy(pair["label"][t]).to(device, torch.float32) for t in refs}
        probs = self.inferer(frames, self.network, references=masks, entry=entry).float()
        return {
            "name": entry_id(entry),
            "probs": probs,
            "pred": (probs > self.threshold).to(torch.uint8).cpu().numpy(),
            "gt": pair["label"],
            "references": refs,
            "excluded": choice.excluded,
            "reference_rule": choice.rule,
            "spacing": pair["spacing"],
            "frames": pair["image"],
            "image_path": pair["image_path"],
            "label_path": pair["label_path"],
            "labelled_frames": pair["labelled_frames"],
            "format": video_format(pair["image_path"]),
        }
