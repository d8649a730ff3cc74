"""Video data: readers and writers, decathlon datalists, synthetic breast-ultrasound videos."""

from __future__ import annotations

from stbv_monai.data.datalist import (
    SPLITS,
    check_labelled_frames,
    describe_datalist,
    check_video_pair,
    load_datalist,
    load_video_pair,
)
from stbv_monai.data.dataset import SOURCE_GT, SOURCE_NONE, SOURCE_PSEUDO, LoadVideoPaird, video_dataset
from stbv_monai.data.io import Video, read_mask, read_video, video_format, write_mask, write_video
from stbv_monai.data.prepare import ensure_dataset
from stbv_monai.data.readers import VideoReader

__all__ = [
    "SOURCE_GT",
    "SOURCE_NONE",
    "SOURCE_PSEUDO",
    "SPLITS",
    "LoadVideoPaird",
    "video_dataset",
    "Video",
    "VideoReader",
    "check_labelled_frames",
    "check_video_pair",
    "describe_datalist",
    "ensure_dataset",
    "load_datalist",
    "load_video_pair",
    "read_mask",
    "read_video",
    "video_format",
    "write_mask",
    "write_video",
]
