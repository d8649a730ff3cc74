"""MONAI ``ImageReader`` for videos, so ``LoadImage(d)`` loads any supported video format.

MONAI's readers see a NIfTI 2D+t file as a 3D volume and cannot open MP4 or frame folders;
this reader hands the format work to :mod:`stbv_monai.data.io` and returns the video with time
as the channel axis, ``(T, H, W)``, so MONAI's 2D transforms treat every frame alike.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from monai.data import ImageReader

from stbv_monai.data.io import Video, read_mask, read_video, video_format
from stbv_monai.errors import InputError

__all__ = ["VideoReader"]


class VideoReader(ImageReader):
    """Read a video (``mask=False``) or a binary mask video (``mask=True``) as ``(T, H, W)``.

    Example:
        ``LoadImaged(keys="image", reader=VideoReader(), image_only=True)``

    Args:
        mask: read as a mask: values {0, 1} or {0, 255} become uint8 {0, 1}.
    """

    def __init__(self, mask: bool = False) -> None:
        super().__init__()
        self.mask = mask

    def verify_suffix(self, filename: Sequence[os.PathLike] | os.PathLike) -> bool:
        try:
            return all(video_format(f) for f in _as_list(filename))
        except InputError:
            return False

    def read(self, data: Sequence[os.PathLike] | os.PathLike, **kwargs: Any) -> Video:
        files = _as_list(data)
        if len(files) != 1:
            raise InputError(files, "VideoReader reads one video at a time")
        path = Path(files[0])
        if self.mask:
            return Video(frames=read_mask(path), source=str(path))
        return read_video(path)

    def get_data(self, img: Video) -> tuple[np.ndarray, dict[str, Any]]:
        t, h, w = img.frames.shape
        row, col = img.spacing or (1.0, 1.0)
        meta = {
            "original_channel_dim": 0,  # time is the channel axis
            "spatial_shape": np.asarray((h, w)),
            "n_frames": t,
            "affine": np.diag([row, col, 1.0]),
            "spacing_known": img.spacing is not None,
            "fps": img.fps or 0.0,
            "video_format": video_format(img.source),
        }
        return img.frames, meta


def _as_list(data: Any) -> list:
    return list(data) if isinstance(data, (list, tuple)) else [data]
