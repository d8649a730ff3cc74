"""An Ignite engine that segments (or reads) one whole video per iteration.

MONAI's ``SupervisedEvaluator`` runs a network on batches of independent samples; a video is
segmented by a stateful time loop from its reference frames, and is scored with per-video
protocol rules (references left out), so the unit of work here is one video. What is done
with each prediction is up to the handlers attached: metrics
(:class:`~stbv_monai.handlers.VideoMetricsHandler`), files
(:class:`~stbv_monai.handlers.PredictionWriter`), progress, tracking. Inference, evaluation
and the validation of the training stages are this one engine with different handlers.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from ignite.engine import Engine
from tqdm import tqdm

from stbv_monai.data.datalist import load_video_pair
from stbv_monai.data.ids import entry_id, legacy_id
from stbv_monai.data.io import read_mask, video_format, video_id
from stbv_monai.errors import InputError

__all__ = [
    "PROTOCOLS",
    "ProtocolReferences",
    "VideoEvaluator",
    "choose_references",
    "copy_predictor",
    "folder_predictor",
    "network_predictor",
]

logger = logging.getLogger(__name__)

#: ``labelled``: every labelled frame is a reference (two-shot); ``first_frame``: DAVIS's
#: semi-supervised protocol, the ground truth of the first frame where the lesion appears.
PROTOCOLS = ("labelled", "first_frame")

Predictor = Callable[[torch.Tensor, Mapping[int, torch.Tensor], Mapping[str, Any]], torch.Tensor]


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


def network_predictor(network: torch.nn.Module, show_frames: bool = False, **propagate_kwargs: Any) -> Predictor:
    """Predict by bidirectional multi-reference propagation (``stbv_monai.inference.propagate``).

    Args:
        network: the STCN (or a module holding one as ``.network``), on the evaluator's device.
        show_frames: show a progress bar of each video's propagated frames (``tqdm`` on stderr,
            cleared when the video is done), below a bar over videos if one is attached.
        propagate_kwargs: settings of ``propagate`` (``mem_every``, ``top_k``, ``max_memory_frames``, ``amp`` ...).
    """
    from stbv_monai.inference import propagate

    def predict(frames: torch.Tensor, refs: Mapping[int, torch.Tensor], entry: Mapping[str, Any]) -> torch.Tensor:
        if not show_frames:
            return propagate(network, frames, refs, **propagate_kwargs)
        total = int(frames.shape[0]) - len(refs)  # every frame but the references is propagated once
        with tqdm(total=total, desc=f"frames of {entry_id(entry)}", unit="frame", leave=False) as bar:
            return propagate(network, frames, refs, progress=_advance(bar), **propagate_kwargs)

    return predict


def _advance(bar: tqdm) -> Callable[[int, int], None]:
    """A ``propagate`` progress callback moving ``bar`` to ``done`` of ``total``."""

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    return update


def copy_predictor() -> Predictor:
    """The zero-motion baseline: every frame gets the mask of its nearest reference (same merge rule).

    What a tracker must beat: it scores well only where the lesion neither moves nor deforms.
    """
    from stbv_monai.inference import assign_sources

    def predict(frames: torch.Tensor, refs: Mapping[int, torch.Tensor], entry: Mapping[str, Any]) -> torch.Tensor:
        sources = assign_sources(frames.shape[0], refs.keys())
        return torch.stack([refs[r].float() for r, _ in sources])

    return predict


def folder_predictor(folder: str | os.PathLike) -> Predictor:
    """Read existing predictions, ``<folder>/<video id>.nii.gz`` (or any mask format), to score other tools.

    A prediction named by file name alone (the naming before ids were unique) cannot be told
    apart from another site's video of the same name, so it is reported, not read.
    """
    root = Path(folder)
    if not root.is_dir():
        raise InputError(root, "predictions folder not found")

    def predict(frames: torch.Tensor, refs: Mapping[int, torch.Tensor], entry: Mapping[str, Any]) -> torch.Tensor:
        vid, old = entry_id(entry), legacy_id(entry)
        candidates = sorted(p for p in root.iterdir() if video_id(p) == vid)
        if not candidates:
            legacy = sorted(p.name for p in root.iterdir() if old != vid and video_id(p) == old)
            hint = (f"; {legacy[0]} is named by file name only (the old naming), rename it to the id if it is "
                    f"this video's ({entry['image']})") if legacy else ""
            raise InputError(root, f"no prediction for video '{vid}' (expected e.g. {vid}.nii.gz or a {vid}/ folder)"
                                   + hint)
        mask = read_mask(candidates[0])
        if mask.shape != tuple(frames.shape):
            raise InputError(candidates[0], f"prediction shape {mask.shape} differs from video shape "
                                            f"{tuple(frames.shape)}")
        return torch.from_numpy(mask.astype(np.float32)).to(frames.device)

    return predict


class VideoEvaluator(Engine):
    """Segment one datalist entry per iteration; handlers consume ``engine.state.output``.

    ``state.output`` holds ``name`` (the video's id), ``probs`` (T, H, W) float tensor, ``pred`` and ``gt``
    (T, H, W) uint8 arrays, ``references`` and ``excluded`` (frame indices), ``reference_rule`` (see
    :class:`ProtocolReferences`), ``spacing`` (or ``None``), ``frames`` (T, H, W)
    float array, ``image_path`` and ``format`` (the input's format family).

    Args:
        predictor: ``predictor(frames, references, entry) -> (T, H, W)`` probabilities.
        device: where frames go.
        protocol: which labelled frames are references (see :data:`PROTOCOLS`).
        threshold: probability above which a pixel is lesion.
    """

    def __init__(self, predictor: Predictor, device: torch.device | str = "cpu", protocol: str = "labelled",
                 threshold: float = 0.5) -> None:
        super().__init__(self._iteration)
        choose_references([0], protocol)  # validate early
        self.predictor = predictor
        self.device = torch.device(device)
        self.protocol = protocol
        self.threshold = threshold

    def _iteration(self, engine: Engine, entry: Mapping[str, Any]) -> dict[str, Any]:
        pair = load_video_pair(dict(entry))
        choice = choose_references(pair["labelled_frames"], self.protocol, pair["label"])
        refs = choice.frames
        if choice.rule == "first_labelled_frame":
            logger.info("%s: the label file holds only the labelled frames, so the first-frame protocol uses the "
                        "first labelled frame (%d), not the lesion's first appearance", entry["image"], refs[0])
        frames = torch.from_numpy(pair["image"]).to(self.device)
        masks = {t: torch.from_numpy(pair["label"][t]).to(self.device, torch.float32) for t in refs}
        probs = self.predictor(frames, masks, entry).float()
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
            "format": video_format(pair["image_path"]),
        }
