"""MONAI Label's local datastore for NIfTI 2D+t videos: names checked, labels checked before kept.

Videos are the ``*.nii.gz`` / ``*.nii`` files of the studies folder (other formats are converted
on import: ``python -m stbv_monai.label.import_videos``). Labels live where MONAI Label keeps
them (``labels/final/<id>.nii.gz``, ``labels/original/...``).

**Names.** This class is the one place where request strings meet the file system: every method
of MONAI Label's :class:`LocalDatastore` that takes a video id, label id or label tag checks it
first (:mod:`stbv_monai.label.safe_names`), whichever endpoint or task calls it. An id must be
a plain name the datastore lists (else HTTP 404, the same answer for a path, a traversal and a
missing video); a tag must be a short plain name (else HTTP 400). Entries with unsafe names
found in an existing ``datastore_v2.json`` (written before these checks) are ignored with a
warning, so nothing outside the studies folder is read, listed, written or deleted.

**Labels.** A label is checked *before* anything is written, so a rejected save leaves the
saved label byte-identical: it must be a NIfTI mask video of the video's shape, and a ``final``
label needs at least one reference frame. The reference frames are recorded in the label's info
(``reference_frames``), where the ``two_shot`` task reads them:

* the ``reference_frames`` the client sent with the save (params), else
* for a label that is an edited ``propagate`` result, the result's references plus the frames
  the annotator changed (see :mod:`stbv_monai.label.references`), else
* the painted frames.

**Added videos** (``PUT /datastore/image``) need a new id, a NIfTI file and a readable video.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from monailabel.datastore.local import LocalDatastore
from monailabel.interfaces.datastore import DefaultLabelTag

from stbv_monai.label.http_errors import BAD_REQUEST, CONFLICT, NOT_FOUND, http_error, input_errors_as_http
from stbv_monai.label.references import ResultMemory, choose_references, parse_frame_list
from stbv_monai.label.result_io import read_label_for, read_request_video
from stbv_monai.label.safe_names import (
    UnsafeName,
    check_new_id,
    check_tag,
    is_known_id,
    is_plain_name,
    is_safe_tag,
    shown,
    unknown_video,
)

__all__ = ["NIFTI_SUFFIXES", "VIDEO_EXTENSIONS", "VideoDatastore"]

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = ("*.nii.gz", "*.nii")
NIFTI_SUFFIXES = (".nii.gz", ".nii")
FINAL = DefaultLabelTag.FINAL.value


class VideoDatastore(LocalDatastore):
    """A :class:`LocalDatastore` of NIfTI videos that checks ids, tags and labels first (module docstring).

    Args:
        studies: the studies folder.
        memory: the last ``propagate`` result per video (to recognise an edited result).
        auto_reload: watch the folder for new files (MONAI Label's setting).
        read_only: MONAI Label's setting.
    """

    def __init__(self, studies: str, memory: ResultMemory, auto_reload: bool = True, read_only: bool = False) -> None:
        self.memory = memory
        super().__init__(studies, extensions=list(VIDEO_EXTENSIONS), auto_reload=auto_reload, read_only=read_only)

    # ------------------------------------------------------------------ the checks

    def check_image_id(self, image_id: Any) -> str:
        """``image_id`` when the datastore lists it; HTTP 404 otherwise (one message for path, traversal, missing)."""
        known = self.list_images()
        if not is_known_id(image_id, known):
            raise http_error(NOT_FOUND, unknown_video(image_id, len(known)))
        return image_id

    def check_tag(self, tag: Any) -> str:
        """``tag`` as a plain string when it may name a label folder; HTTP 400 otherwise."""
        try:
            return check_tag(tag)
        except UnsafeName as exc:
            raise http_error(BAD_REQUEST, str(exc)) from exc

    def require_image(self, image_id: Any) -> str:
        """The video's path; HTTP 404 naming ``image_id`` when it is not in the datastore (or its file is gone)."""
        path = self.get_image_uri(image_id)
        if not path or not os.path.isfile(path):
            raise http_error(NOT_FOUND, unknown_video(image_id, len(self.list_images())))
        return path

    # ------------------------------------------------------------------ reads

    def get_image_uri(self, image_id: str) -> str:
        return super().get_image_uri(self.check_image_id(image_id))

    def get_image_info(self, image_id: str) -> dict[str, Any]:
        return super().get_image_info(self.check_image_id(image_id))

    def get_label_uri(self, label_id: str, label_tag: str) -> str:
        return super().get_label_uri(self.check_image_id(label_id), self.check_tag(label_tag))

    def get_label_info(self, label_id: str, label_tag: str) -> dict[str, Any]:
        return super().get_label_info(self.check_image_id(label_id), self.check_tag(label_tag))

    def get_labels_by_image_id(self, image_id: str) -> dict[str, str]:
        return super().get_labels_by_image_id(self.check_image_id(image_id))

    def get_label_by_image_id(self, image_id: str, tag: str) -> str:
        return super().get_label_by_image_id(self.check_image_id(image_id), self.check_tag(tag))

    # ------------------------------------------------------------------ writes

    def add_image(self, image_id: str, image_filename: str, image_info: dict[str, Any]) -> str:
        try:
            image_id = check_new_id(image_id)
        except UnsafeName as exc:
            raise http_error(BAD_REQUEST, str(exc)) from exc
        suffix = _nifti_suffix(image_filename)
        if suffix is None:
            raise http_error(BAD_REQUEST, f"video {shown(image_id)}: only NIfTI 2D+t videos (.nii.gz, .nii) can be "
                                          "added; convert others with python -m stbv_monai.label.import_videos")
        folder = self._datastore.image_path()
        if image_id in self.list_images() or any(os.path.exists(os.path.join(folder, image_id + s))
                                                 for s in NIFTI_SUFFIXES):
            raise http_error(CONFLICT, f"video {shown(image_id)} is already in the datastore; "
                                       "remove it first (DELETE /datastore/image?id=...) to replace it")
        with input_errors_as_http():
            read_request_video(image_filename, image_id)
        return super().add_image(image_id, image_filename, image_info)

    def remove_image(self, image_id: str) -> None:
        super().remove_image(self.check_image_id(image_id))

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any]) -> str:
        image_path = self.require_image(image_id)
        tag = self.check_tag(label_tag)
        if _nifti_suffix(label_filename) is None:
            raise http_error(BAD_REQUEST, "label: must be a NIfTI mask video (.nii.gz or .nii)")
        info = dict(label_info or {})
        with input_errors_as_http():
            if tag == FINAL:
                info.update(self._reference_info(image_id, image_path, label_filename, info))
            else:
                read_label_for(label_filename, read_request_video(image_path, image_id), "label")
        return super().save_label(image_id, label_filename, tag, info)

    def remove_label(self, label_id: str, label_tag: str) -> None:
        super().remove_label(self.check_image_id(label_id), self.check_tag(label_tag))

    def update_image_info(self, image_id: str, info: dict[str, Any]) -> None:
        return super().update_image_info(self.check_image_id(image_id), _info_dict(info))

    def update_label_info(self, label_id: str, label_tag: str, info: dict[str, Any]) -> None:
        return super().update_label_info(self.check_image_id(label_id), self.check_tag(label_tag), _info_dict(info))

    # ------------------------------------------------------------------ MONAI Label 0.8.5 internals

    def _init_from_datastore_file(self, throw_exception: bool = False) -> None:
        """MONAI Label's (re)load of ``datastore_v2.json``, then unsafe entries dropped from memory."""
        super()._init_from_datastore_file(throw_exception=throw_exception)
        self._drop_unsafe_entries()

    def _add_non_existing_labels(self, tag: str) -> int:
        """MONAI Label's scan of ``labels/<tag>/``, for safe tag folder names only."""
        if not is_safe_tag(tag):
            logger.warning("datastore: ignoring label folder %s: not a safe tag name", shown(tag))
            return 0
        return super()._add_non_existing_labels(tag)

    def _drop_unsafe_entries(self) -> None:
        objects = self._datastore.objects
        for image_id in [k for k in objects if not is_plain_name(k)]:
            logger.warning("datastore: ignoring video id %s: not a plain file name", shown(image_id))
            del objects[image_id]
        for image_id, obj in objects.items():
            for tag in [t for t in obj.labels if not is_safe_tag(t)]:
                logger.warning("datastore: ignoring label %s of %s: not a safe tag name", shown(tag), image_id)
                del obj.labels[tag]

    def _reference_info(self, image_id: str, image_path: str, label_filename: str,
                        info: dict[str, Any]) -> dict[str, Any]:
        video = read_request_video(image_path, image_id)
        mask = read_label_for(label_filename, video, "label")
        explicit = parse_frame_list(info.get("reference_frames"), mask.shape[0])
        choice = choose_references(mask, explicit, self.memory.get(os.path.realpath(image_path)))
        logger.info("label of %s: reference frames %s (%s)", image_id, choice.frames, choice.source)
        return {"reference_frames": choice.frames, "reference_source": choice.source}


def _nifti_suffix(path: str) -> str | None:
    name = os.path.basename(str(path))
    return next((s for s in NIFTI_SUFFIXES if name.endswith(s)), None)


def _info_dict(info: Any) -> dict[str, Any]:
    if not isinstance(info, dict):
        raise http_error(BAD_REQUEST, f"info: must be a JSON object, got {shown(info)}")
    return info
