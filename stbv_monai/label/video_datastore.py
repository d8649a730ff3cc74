"""MONAI Label's local datastore for NIfTI 2D+t videos, checking labels before it keeps them.

Videos are the ``*.nii.gz`` / ``*.nii`` files of the studies folder (other formats are converted
on import: ``python -m stbv_monai.label.import_videos``). Labels live where MONAI Label keeps
them (``labels/final/<id>.nii.gz``, ``labels/original/...``).

A label is checked *before* anything is written, so a rejected save leaves the saved label
byte-identical: it must be a readable mask video of the video's shape, and a ``final`` label
needs at least one reference frame. The reference frames are recorded in the label's info
(``reference_frames``), where the ``two_shot`` task reads them:

* the ``reference_frames`` the client sent with the save (params), else
* for a label that is an edited ``propagate`` result, the result's references plus the frames
  the annotator changed (see :mod:`stbv_monai.label.references`), else
* the painted frames.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from monailabel.datastore.local import LocalDatastore
from monailabel.interfaces.datastore import DefaultLabelTag

from stbv_monai.label.http_errors import NOT_FOUND, http_error, input_errors_as_http
from stbv_monai.label.references import ResultMemory, choose_references, parse_frame_list
from stbv_monai.label.result_io import read_label_for, read_request_video

__all__ = ["VIDEO_EXTENSIONS", "VideoDatastore"]

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = ("*.nii.gz", "*.nii")


class VideoDatastore(LocalDatastore):
    """A :class:`LocalDatastore` of NIfTI videos whose ``save_label`` validates first.

    Args:
        studies: the studies folder.
        memory: the last ``propagate`` result per video (to recognise an edited result).
        auto_reload: watch the folder for new files (MONAI Label's setting).
        read_only: MONAI Label's setting.
    """

    def __init__(self, studies: str, memory: ResultMemory, auto_reload: bool = True, read_only: bool = False) -> None:
        self.memory = memory
        super().__init__(studies, extensions=list(VIDEO_EXTENSIONS), auto_reload=auto_reload, read_only=read_only)

    def require_image(self, image_id: str) -> str:
        """The video's path; an HTTP 404 naming ``image_id`` when it is not in the datastore."""
        path = self.get_image_uri(image_id) if image_id in self.list_images() else ""
        if not path or not os.path.exists(path):
            raise http_error(NOT_FOUND, f"video '{image_id}' is not in the datastore "
                                        f"({len(self.list_images())} videos; GET /datastore/ lists them)")
        return path

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any]) -> str:
        image_path = self.require_image(image_id)
        info = dict(label_info or {})
        with input_errors_as_http():
            if label_tag == DefaultLabelTag.FINAL or label_tag == DefaultLabelTag.FINAL.value:
                info.update(self._reference_info(image_id, image_path, label_filename, info))
            else:
                read_label_for(label_filename, read_request_video(image_path, image_id), "label")
        return super().save_label(image_id, label_filename, label_tag, info)

    def _reference_info(self, image_id: str, image_path: str, label_filename: str,
                        info: dict[str, Any]) -> dict[str, Any]:
        video = read_request_video(image_path, image_id)
        mask = read_label_for(label_filename, video, "label")
        explicit = parse_frame_list(info.get("reference_frames"), mask.shape[0])
        choice = choose_references(mask, explicit, self.memory.get(os.path.realpath(image_path)))
        logger.info("label of %s: reference frames %s (%s)", image_id, choice.frames, choice.source)
        return {"reference_frames": choice.frames, "reference_source": choice.source}

