"""The ``propagate`` infer task: a label with a few painted frames in, the whole mask video out.

Request (MONAI Label fills ``image`` with the video's path and ``label`` with the uploaded
label file, or the app with the video's saved label):

* ``reference_frames`` (optional): frames to use as references, e.g. ``[3, 40]`` or ``"3, 40"``;
  a listed frame with an empty mask means "no lesion here". Without it the references follow
  :mod:`stbv_monai.label.references` (painted frames, or the frames corrected since the last result).
* ``probabilities`` (optional, default false): return float probabilities instead of the 0/1 mask.
* ``threshold`` (optional): probability above which a pixel is lesion (default ``--conf threshold``).

The answer is a NIfTI mask video with the video's geometry and these params: ``references``,
``reference_source``, ``corrected_frames``, ``frame_reference`` (which reference segmented each
frame), ``frame_area`` (lesion pixels per frame), ``frame_confidence`` (mean max(p, 1 − p) per frame:
1 certain, 0.5 a coin toss), ``least_confident_frame`` (where a correction likely helps most),
``model`` (the weights file served) and ``latencies``.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import numpy as np
import torch
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from stbv_monai.inference import assign_sources, propagate
from stbv_monai.inference.confidence import frame_confidence
from stbv_monai.label.app_config import AppConfig
from stbv_monai.label.http_errors import BAD_REQUEST, UNAVAILABLE, http_error, input_errors_as_http
from stbv_monai.label.model_store import ModelInfo, ModelLoadError, ModelStore
from stbv_monai.label.references import ReferenceChoice, ResultMemory, choose_references, parse_frame_list
from stbv_monai.label.result_io import read_label_for, read_request_video, write_like

__all__ = ["LABELS", "PropagateInfer"]

logger = logging.getLogger(__name__)

LABELS = {"lesion": 1}
NO_LABEL = ("no label: send the label video with the request (the 'label' file), or save one for "
            "this video first (PUT /datastore/label)")


class PropagateInfer(InferTask):
    """Bidirectional multi-reference propagation with the currently served network.

    Args:
        config: the app configuration.
        models: where the network comes from (reloaded when its file changes).
        memory: the last result per video (for the edited-result reference rule).
    """

    def __init__(self, config: AppConfig, models: ModelStore, memory: ResultMemory) -> None:
        super().__init__(
            type=InferType.SEGMENTATION,
            labels=LABELS,
            dimension=3,
            description="Propagate the painted frames of a breast-ultrasound video to all its frames "
                        "(ST-BV memory network, bidirectional, nearest reference)",
            config={"reference_frames": "", "probabilities": False, "threshold": config.threshold},
        )
        self.app_config = config
        self.models = models
        self.memory = memory

    def is_valid(self) -> bool:
        return True

    def get_path(self, validate: bool = True) -> str | None:
        path = self.app_config.served_model()
        return str(path) if path else None

    def __call__(self, request: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        with input_errors_as_http():
            return self._run(request)

    def _run(self, request: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        start = time.perf_counter()
        name = str(request.get("video_id") or request["image"])
        video = read_request_video(request["image"], name)
        if not request.get("label"):
            raise http_error(BAD_REQUEST, f"{name}: {NO_LABEL}")
        label_name = "label" if request.get("label_origin", "upload") == "upload" else f"saved label of {name}"
        mask = read_label_for(request["label"], video, label_name)
        explicit = parse_frame_list(request.get("reference_frames"), mask.shape[0])
        key = os.path.realpath(request["image"])
        choice = choose_references(mask, explicit, self.memory.get(key))
        network, info = self._network()
        threshold = _threshold(request.get("threshold"), self.app_config.threshold)
        read_s = time.perf_counter() - start

        probs = self._propagate(network, video.frames, mask, choice.frames)
        infer_s = time.perf_counter() - start - read_s

        pred = (probs > threshold).astype(np.uint8)
        want_probs = _flag(request.get("probabilities"))
        out = write_like(request["image"], probs if want_probs else pred, video.spacing,
                         np.float32 if want_probs else np.uint8)
        self.memory.remember(key, choice.frames, pred)
        total_s = time.perf_counter() - start
        params = _summary(probs, pred, choice, info.as_dict())
        params["probabilities"] = want_probs
        params["label_origin"] = request.get("label_origin", "upload")
        params["latencies"] = _latencies(read_s, infer_s, total_s - read_s - infer_s, total_s)
        logger.info("propagate %s: references %s (%s), %d frames in %.2fs", name, choice.frames,
                    choice.source, probs.shape[0], total_s)
        return out, params

    def _network(self) -> tuple[torch.nn.Module, ModelInfo]:
        try:
            return self.models.get()
        except ModelLoadError as exc:
            raise http_error(UNAVAILABLE, str(exc)) from exc

    def _propagate(self, network: torch.nn.Module, frames: np.ndarray, mask: np.ndarray,
                   references: list[int]) -> np.ndarray:
        device = self.app_config.device
        refs = {t: torch.from_numpy(mask[t]).to(device, torch.float32) for t in references}
        probs = propagate(
            network, torch.from_numpy(frames).to(device), refs,
            mem_every=self.app_config.mem_every, top_k=self.app_config.top_k, amp=device.type == "cuda",
        )
        return probs.cpu().numpy()


def _summary(probs: np.ndarray, pred: np.ndarray, choice: ReferenceChoice, model: dict[str, Any]) -> dict[str, Any]:
    n = probs.shape[0]
    confidence = frame_confidence(probs).numpy()
    free = [t for t in range(n) if t not in set(choice.frames)]
    return {
        "label_names": dict(LABELS),
        "references": list(choice.frames),
        "reference_source": choice.source,
        "corrected_frames": list(choice.corrected),
        "frame_reference": [int(r) for r, _ in assign_sources(n, choice.frames)],
        "frame_area": [int(a) for a in pred.reshape(n, -1).sum(axis=1)],
        "frame_confidence": [round(float(c), 4) for c in confidence],
        "least_confident_frame": int(min(free, key=lambda t: confidence[t])) if free else None,
        "model": model,
    }


def _latencies(read_s: float, infer_s: float, write_s: float, total_s: float) -> dict[str, float]:
    r = lambda s: round(float(s), 3)  # noqa: E731
    return {"pre": r(read_s), "infer": r(infer_s), "invert": 0.0, "post": r(write_s), "write": r(write_s),
            "total": r(total_s), "transform": {}}


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _threshold(value: Any, default: float) -> float:
    if value is None or value == "":
        return default
    try:
        t = float(value)
    except (TypeError, ValueError):
        t = -1.0
    if not 0.0 <= t <= 1.0:
        raise http_error(BAD_REQUEST, f"threshold: must be a number in [0, 1], got {value!r}")
    return t
