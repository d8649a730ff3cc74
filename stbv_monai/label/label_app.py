"""The MONAI Label app: a datastore of NIfTI 2D+t videos, ``propagate``, ``two_shot``, ``two_frames``.

Offline by construction: it builds its network locally (``--conf model_path`` or the files of
:mod:`stbv_monai.label.app_config`), uses MONAI Label's local datastore only, and defines no
bundle, model-zoo or SAM2 task, so nothing is downloaded at start or later.

Nothing outside the studies folder is reachable by request: video ids and label tags are checked
by the datastore (:mod:`stbv_monai.label.video_datastore`), an infer request names a datastore
video or uploads one (a path is answered like an unknown id, HTTP 404), uploads are size-limited
and always removed (:mod:`stbv_monai.label.uploads`), and MONAI Label's sessions, which keep
uploads on disk for an hour, are off.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from monailabel.config import settings
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.datastore import Datastore, DefaultLabelTag

import stbv_monai
from stbv_monai.errors import InputError
from stbv_monai.label.app_config import AppConfig
from stbv_monai.label.frame_strategy import TwoFramesStrategy
from stbv_monai.label.http_errors import BAD_REQUEST, http_error, input_errors_as_http
from stbv_monai.label.model_store import ModelStore
from stbv_monai.label.propagate_task import LABELS, PropagateInfer
from stbv_monai.label.references import ResultMemory
from stbv_monai.label.two_shot_train import TwoShotTrain
from stbv_monai.label.uploads import trusted_keys
from stbv_monai.label.video_datastore import VideoDatastore

__all__ = ["STBVLabelApp"]

logger = logging.getLogger(__name__)


class STBVLabelApp(MONAILabelApp):
    """Two-shot annotation of breast-ultrasound videos (see this folder's README.md).

    Args:
        app_dir: the app folder (``stbv_monai/label``).
        studies: the studies folder of NIfTI 2D+t videos.
        conf: ``--conf`` keys (:data:`stbv_monai.label.app_config.KNOWN_KEYS`).
    """

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        self.app_config = AppConfig.from_conf(app_dir, conf)
        self.memory = ResultMemory()
        self.models = ModelStore(self.app_config)
        logger.info("stbv app: %s", self.app_config)
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="ST-BV two-shot breast-ultrasound video segmentation",
            description="Paint the lesion on two frames; the memory network propagates it through the video",
            version=stbv_monai.__version__,
            labels=LABELS,
        )

    def init_datastore(self) -> Datastore:
        if self.studies.startswith(("http://", "https://")):
            raise InputError(self.studies, "this app needs a local studies folder of NIfTI 2D+t videos")
        return VideoDatastore(
            self.studies,
            self.memory,
            auto_reload=settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD,
            read_only=settings.MONAI_LABEL_DATASTORE_READ_ONLY,
        )

    def init_infers(self) -> dict[str, Any]:
        return {"propagate": PropagateInfer(self.app_config, self.models, self.memory)}

    def init_trainers(self) -> dict[str, Any]:
        return {"two_shot": TwoShotTrain(self.app_config)}

    def init_strategies(self) -> dict[str, Any]:
        return {"two_frames": TwoFramesStrategy()}

    def server_mode(self, mode: bool) -> None:
        """MONAI Label's call when the server starts: install the upload limit and cleanup (:mod:`.uploads`)."""
        super().server_mode(mode)
        if mode:
            from stbv_monai.label import uploads

            uploads.install(self.app_config.max_upload_bytes)

    def _load_sessions(self, load: bool = False) -> None:
        """No sessions: a session upload stays on disk until it expires, and this app serves datastore videos."""
        if load:
            logger.info("stbv app: MONAI Label sessions are disabled (PUT /session/ answers 406)")
        return None

    def infer(self, request: dict[str, Any], datastore: Datastore | None = None) -> dict[str, Any]:
        """MONAI Label's infer, after resolving the video (a datastore id or an uploaded file) and the label.

        ``image`` must be a video id from the datastore (else HTTP 404, paths included) unless the
        endpoint filled it from an uploaded file. The label is the uploaded ``label`` file when
        there is one (a path in ``label`` is refused), else the video's saved label (tag
        ``reference_tag``, default ``final``).
        """
        request = {k: v for k, v in request.items() if k not in ("video_id", "label_origin")}
        store = datastore or self.datastore()
        uploaded = trusted_keys()
        image = request.get("image")
        if "image" in uploaded:
            request["video_id"] = _describe_upload(str(image))
        else:
            store.require_image(image)  # HTTP 404 for anything but a datastore id
            request["video_id"] = image
        if request.get("save_label"):
            store.check_tag(request.get("label_tag") or DefaultLabelTag.ORIGINAL.value)  # before a result is written
        if request.get("label"):
            if "label" not in uploaded:
                raise http_error(BAD_REQUEST, "label: send the label video as the multipart file 'label' "
                                              "(file paths are not accepted)")
            request["label_origin"] = "upload"
        elif "image" not in uploaded:
            tag = request.get("reference_tag") or DefaultLabelTag.FINAL.value
            saved = store.get_label_uri(image, tag)
            if saved and os.path.exists(saved):
                request["label"], request["label_origin"] = saved, f"saved:{tag}"
        with input_errors_as_http():
            return super().infer(request, datastore)

    def infer_wsi(self, request: dict[str, Any], datastore: Datastore | None = None) -> dict[str, Any]:
        """Refused: the app's videos are not whole-slide images (MONAI Label would read ``image`` as a path)."""
        raise http_error(BAD_REQUEST, "WSI inference is not supported by this app; use POST /infer/propagate")


def _describe_upload(path: str) -> str:
    """How messages name a video given as a file: MONAI Label keeps uploads in the temp folder."""
    p = Path(path)
    if p.parent == Path(tempfile.gettempdir()):
        return f"uploaded file ({''.join(p.suffixes) or 'no suffix'})"
    return "uploaded file"
