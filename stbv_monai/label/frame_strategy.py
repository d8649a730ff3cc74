"""The ``two_frames`` next-sample strategy: which video to annotate next, and which two frames.

``POST /activelearning/two_frames`` with ``{}`` proposes the next unlabelled video (no saved
``final`` label); with ``{"image": "<video id>"}`` it answers for that video. Optional
``min_gap``: the least distance in frames between the two proposals. The answer adds to MONAI
Label's usual fields (``id``, ``path``, ...) ``frames: [t1, t2]``, ``n_frames``, ``min_gap`` and
``frame_cost``; how they are chosen is :mod:`stbv_monai.label.frame_selection`.

Thumbnails are cached per file (path, modification time, size), so only new or changed videos
are read again. Files that are not usable videos are skipped with a warning when proposing,
and answered with HTTP 400 when asked for by id.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import numpy as np
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.strategy import Strategy

from stbv_monai.errors import InputError
from stbv_monai.label.frame_selection import order_videos, pick_reference_frames, thumbnails
from stbv_monai.label.http_errors import BAD_REQUEST, NOT_FOUND, http_error, input_errors_as_http
from stbv_monai.label.result_io import read_request_video
from stbv_monai.label.safe_names import is_known_id, unknown_video

__all__ = ["TwoFramesStrategy"]

logger = logging.getLogger(__name__)


class TwoFramesStrategy(Strategy):
    """Next unlabelled video (greedy k-centre on mean thumbnails) and its two most representative frames."""

    def __init__(self) -> None:
        super().__init__("Next unlabelled video, and the two frames whose masks propagation can carry "
                         "furthest (representative of the two halves each reference covers)")
        self._cache: dict[str, tuple[tuple[int, int], np.ndarray]] = {}
        self._lock = threading.Lock()

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any]:
        min_gap = _min_gap(request.get("min_gap"))
        image_id = request.get("image") or request.get("video")
        if image_id:
            known = datastore.list_images()
            if not is_known_id(image_id, known):  # one answer for a path, a traversal and a missing video
                raise http_error(NOT_FOUND, unknown_video(image_id, len(known)))
            with input_errors_as_http(BAD_REQUEST):
                return self._answer(image_id, self._thumbnails(image_id, datastore), min_gap)
        thumbs = {}
        for vid in datastore.list_images():
            try:
                thumbs[vid] = self._thumbnails(vid, datastore)
            except InputError as exc:
                logger.warning("two_frames: skipping %s: %s", vid, exc)
        labelled = [v for v in datastore.get_labeled_images() if v in thumbs]
        order = order_videos({k: t.mean(axis=0) for k, t in thumbs.items()}, labelled)
        if not order:
            logger.info("two_frames: every video has a saved label")
            return {}
        return self._answer(order[0], thumbs[order[0]], min_gap)

    def _answer(self, image_id: str, thumbs: np.ndarray, min_gap: int | None) -> dict[str, Any]:
        pair = pick_reference_frames(thumbs, min_gap)
        logger.info("two_frames: %s, paint frames %s", image_id, list(pair.frames))
        return {"id": image_id, "frames": list(pair.frames), "n_frames": int(len(thumbs)),
                "min_gap": pair.min_gap, "frame_cost": round(pair.cost, 4)}

    def _thumbnails(self, image_id: str, datastore: Datastore) -> np.ndarray:
        path = datastore.get_image_uri(image_id)
        try:
            st = os.stat(path)
        except OSError as exc:
            raise InputError(image_id, f"video file missing ({path})") from exc
        stamp = (st.st_mtime_ns, st.st_size)
        with self._lock:
            hit = self._cache.get(path)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        thumbs = thumbnails(read_request_video(path, image_id).frames)
        with self._lock:
            self._cache[path] = (stamp, thumbs)
        return thumbs


def _min_gap(value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        gap = int(value)
    except (TypeError, ValueError):
        gap = 0
    if gap < 1:
        raise http_error(BAD_REQUEST, f"min_gap: must be a positive number of frames, got {value!r}")
    return gap
