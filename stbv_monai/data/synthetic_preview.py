"""Contact sheet of a video dataset: frames of a few videos with the lesion outline, to judge realism."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from stbv_monai.data.io import atomic_path, read_mask, read_video

__all__ = ["save_preview"]

logger = logging.getLogger(__name__)


def save_preview(datalist: str | os.PathLike, out_png: str | os.PathLike, videos: int = 4, frames: int = 6) -> Path:
    """Draw ``videos`` rows of ``frames`` evenly spaced frames with the mask outline in yellow.

    Videos are spread evenly over the datalist (training, validation, test). Labelled frames are
    included and titled with ``*``. Draws on a bare matplotlib ``Figure`` (Agg), so it needs
    no display and leaves pyplot's global state alone.

    Args:
        datalist: a decathlon datalist with ``image``/``label`` entries.
        out_png: the PNG to write (atomically).
        videos: rows of the sheet (fewer if the datalist has fewer videos).
        frames: frames per row.
    """
    from matplotlib.figure import Figure

    from stbv_monai.data.datalist import SPLITS  # imports MONAI: only when a preview is asked for

    everything = [e for split in SPLITS for e in _split(datalist, split)]
    picks = np.unique(np.linspace(0, len(everything) - 1, min(videos, len(everything))).round().astype(int))
    entries = [everything[i] for i in picks]
    fig = Figure(figsize=(1.9 * frames, 2.15 * len(entries)), dpi=110)
    axes = fig.subplots(len(entries), frames, squeeze=False)
    for row, entry in zip(axes, entries):
        video, mask = read_video(entry["image"]).frames, read_mask(entry["label"])
        labelled = set(entry.get("labelled_frames", []))
        for ax, t in zip(row, _pick_frames(video.shape[0], frames, labelled)):
            ax.imshow(video[t], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            if mask[t].any():
                ax.contour(mask[t], levels=[0.5], colors="yellow", linewidths=0.7)
            star = "*" if t in labelled else ""
            ax.set_title(f"{Path(entry['image']).name.split('.')[0]} t={t}{star}", fontsize=7)
            ax.set_axis_off()
    fig.tight_layout(pad=0.4, h_pad=0.8)
    out = Path(out_png)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    logger.info("preview of %d videos written to %s", len(entries), out)
    return out


def _pick_frames(total: int, count: int, labelled: set[int]) -> list[int]:
    """``count`` frames spread over the video, the labelled ones included."""
    spread = np.linspace(0, total - 1, max(count - len(labelled), 2)).round().astype(int)
    return sorted({int(t) for t in spread} | {int(t) for t in labelled})[:count]


def _split(datalist: str | os.PathLike, split: str) -> list[dict]:
    """Entries of ``split`` with absolute paths, or none when the datalist lacks the split."""
    with open(datalist) as f:
        if split not in json.load(f):
            return []
    from stbv_monai.data.datalist import load_datalist

    return load_datalist(datalist, split)
