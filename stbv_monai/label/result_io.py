"""Read a request's video and label; write a result video with the video's own geometry.

Datastore videos are NIfTI 2D+t (array ``(W, H, T)`` on disk). A result written for such a
video reuses its affine and header (only the data type changes), so 3D Slicer overlays the
mask exactly on the frames; other inputs (an uploaded MP4, DICOM) get a NIfTI with their pixel
spacing.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

from stbv_monai.data import Video, read_mask, read_video, video_format, write_mask
from stbv_monai.errors import InputError

__all__ = ["read_label_for", "read_request_video", "write_like"]


def read_request_video(path: str | os.PathLike, name: str | None = None) -> Video:
    """Read the video of a request; problems are reported under ``name`` (the video id).

    Raises:
        InputError: not a supported video, unreadable, fewer than 3 frames.
    """
    try:
        return read_video(path)
    except InputError as exc:
        raise InputError(name or exc.source, f"not a usable video: {_unnamed(exc.problem, path)}") from exc


def read_label_for(path: str | os.PathLike, video: Video, name: str = "label") -> np.ndarray:
    """Read a label video and check it fits ``video``: ``(T, H, W)`` uint8 in {0, 1}.

    Raises:
        InputError: unreadable, values other than {0, 1}/{0, 255}, or a shape unlike the video's.
    """
    try:
        mask = read_mask(path)
    except InputError as exc:
        raise InputError(name, _unnamed(exc.problem, path)) from exc
    if mask.shape != video.frames.shape:
        raise InputError(name, f"label shape (T, H, W) = {tuple(mask.shape)} differs from the video's "
                               f"{tuple(video.frames.shape)}; send a label painted on this video")
    return mask


def write_like(image_path: str | os.PathLike, volume: np.ndarray, spacing: tuple[float, float] | None,
               dtype: type = np.uint8) -> str:
    """Write a ``(T, H, W)`` volume as a temporary ``.nii.gz`` with the geometry of ``image_path``.

    Returns:
        The file's path (the caller, MONAI Label, deletes it after sending).
    """
    fd, name = tempfile.mkstemp(prefix="stbv-result-", suffix=".nii.gz")
    os.close(fd)
    data = np.ascontiguousarray(np.asarray(volume).astype(dtype).transpose(2, 1, 0))
    img = _nifti_or_none(image_path)
    if img is not None and tuple(img.shape) == data.shape:
        header = img.header.copy()
        header.set_data_dtype(dtype)
        out = type(img)(data, img.affine, header)
        out.header.set_slope_inter(1.0, 0.0)
        nib.save(out, name)
        return name
    os.unlink(name)
    if dtype == np.uint8:
        return str(write_mask(name, volume, spacing))
    return _write_float(name, data, spacing)


def _unnamed(problem: str, path: str | os.PathLike) -> str:
    """``problem`` without the file's path (the client names a file by id or upload, not by server path)."""
    return problem.replace(str(path), "<file>")


def _nifti_or_none(path: str | os.PathLike):
    try:
        if video_format(path) != "nifti":
            return None
    except InputError:
        return None
    return nib.load(str(path))


def _write_float(name: str, data: np.ndarray, spacing: tuple[float, float] | None) -> str:
    sy, sx = spacing or (1.0, 1.0)
    nib.save(nib.Nifti1Image(data, np.diag([sx, sy, 1.0, 1.0])), name)
    return str(Path(name))
