"""Video data: readers and writers, decathlon datalists, still-image datasets, synthetic breast ultrasound.

Names are imported lazily (PEP 562) so that light tools, such as the synthetic-data script,
do not pay for importing torch and MONAI.
"""

from __future__ import annotations

from stbv_monai.lazy import lazy_exports

_EXPORTS = {
    "stbv_monai.data.datalist": (
        "SPLITS", "check_labelled_frames", "check_video_pair", "describe_datalist", "folder_entries", "labelled_fraction",
        "load_datalist", "load_video_pair",
    ),
    "stbv_monai.data.ids": ("assign_ids", "entry_id", "legacy_id"),
    "stbv_monai.data.dataset": ("SOURCE_GT", "SOURCE_NONE", "SOURCE_PSEUDO", "LoadVideoPaird", "video_dataset"),
    "stbv_monai.data.loaders": ("SeededDraws", "ShardSampler", "clip_loader", "per_process_batch", "sharded_clip_loader"),
    "stbv_monai.data.io": ("Video", "read_mask", "read_video", "video_format", "video_id", "write_mask", "write_video"),
    "stbv_monai.data.prepare": ("ensure_dataset", "ensure_stills"),
    "stbv_monai.data.readers": ("VideoReader",),
    "stbv_monai.data.stills": (
        "LoadStillPaird", "load_still_entries", "read_still", "read_still_mask", "still_dataset",
    ),
    "stbv_monai.data.synthetic_stills": ("make_stills",),
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
