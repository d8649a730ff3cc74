"""Write evaluation results: per-video and per-frame CSV, summary JSON, a J&F plot.

Files written into ``out_dir`` (each atomically: a temporary file in the same folder,
then ``os.replace``, so a crash never leaves a half-written report behind):

* ``metrics_per_video.csv``: one row per video (:meth:`VideoMetrics.as_row`).
* ``metrics_per_frame.csv``: one row per frame of every video, references and excluded
  frames included with their ``status``, so that any average can be recomputed.
* ``summary.json``: :func:`stbv_monai.metrics.video.summarise` of all videos.
* ``metrics_plot.png``: J&F over normalised time (0 = first frame, 1 = last) for every
  video with the mean curve, and per-video J&F bars.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from stbv_monai.data.io import atomic_path
from stbv_monai.errors import InputError
from stbv_monai.metrics.video import FrameMetrics, VideoMetrics, summarise

__all__ = ["write_reports", "format_table", "plot_jf", "REPORT_FILES"]

logger = logging.getLogger(__name__)

REPORT_FILES = {
    "per_video": "metrics_per_video.csv",
    "per_frame": "metrics_per_frame.csv",
    "summary": "summary.json",
    "plot": "metrics_plot.png",
}
_TIME_GRID = np.linspace(0.0, 1.0, 101)


def _atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` with ``write(file)`` through the one atomic writer, :func:`~stbv_monai.data.io.atomic_path`."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        write(fh)


def _csv_bytes(rows: Sequence[Mapping[str, Any]]) -> bytes:
    """Rows of equal keys as CSV text (header from the first row)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode()


def _mean_curve(results: Sequence[VideoMetrics]) -> np.ndarray:
    """Mean over videos of J&F on a common normalised-time grid (linear interpolation)."""
    curves = []
    for video in results:
        t, jf = _evaluated_curve(video)
        curves.append(np.interp(_TIME_GRID, t, jf))
    return np.mean(curves, axis=0)


def _evaluated_curve(video: VideoMetrics) -> tuple[np.ndarray, np.ndarray]:
    """Normalised time and J&F of a video's evaluated frames."""
    last = max(len(video.frames) - 1, 1)
    used: list[FrameMetrics] = [fm for fm in video.frames if fm.status == "evaluated"]
    return np.array([fm.frame / last for fm in used]), np.array([fm.jf for fm in used])


def plot_jf(results: Sequence[VideoMetrics], path: str | os.PathLike) -> None:
    """Save the J&F-over-time and per-video J&F figure as PNG at ``path`` (atomically)."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    fig = Figure(figsize=(12, 4.5), layout="constrained")
    ax_time, ax_bar = fig.subplots(1, 2, width_ratios=(3, 2))
    for video in results:
        t, jf = _evaluated_curve(video)
        ax_time.plot(t, jf, lw=0.8, alpha=0.4)
    ax_time.plot(_TIME_GRID, _mean_curve(results), color="black", lw=2, label="mean over videos")
    ax_time.set(xlabel="normalised time (first frame 0, last 1)", ylabel="J&F", ylim=(0, 1.02),
                title="J&F over time (references left out)")
    ax_time.legend(loc="lower left")
    scores = [v.jf for v in results]
    ax_bar.bar(range(len(results)), scores, color="tab:blue")
    ax_bar.axhline(float(np.mean(scores)), color="black", lw=1, ls="--", label=f"mean {np.mean(scores):.3f}")
    ax_bar.set_xticks(range(len(results)), [v.name for v in results], rotation=90, fontsize=6)
    ax_bar.set(ylabel="J&F", ylim=(0, 1.02), title="J&F per video")
    ax_bar.legend(loc="lower right")
    out = Path(path)
    _atomic_write(out, lambda fh: fig.savefig(fh, format="png", dpi=120))


def write_reports(
    results: Sequence[VideoMetrics], out_dir: str | os.PathLike, unit: str | None = None
) -> dict[str, Path]:
    """Write the CSV, JSON and PNG reports of ``results`` into ``out_dir``.

    Args:
        results: one :class:`VideoMetrics` per video, from ``evaluate_video``.
        out_dir: folder for the reports (created if missing).
        unit: the Hausdorff unit the caller expects (``mm`` or ``px``); checked against
            the results so that a report never labels pixels as millimetres. ``None``
            takes the results' unit.

    Returns:
        The written paths by kind (``per_video``, ``per_frame``, ``summary``, ``plot``).

    Raises:
        InputError: no results, or ``unit`` differing from the results' (``mixed`` when
            some videos are in mm and some in pixels; their HD is then left out).
    """
    summary = summarise(results)
    if unit is not None and unit != summary["unit"]:
        raise InputError(out_dir, f"results have Hausdorff distances in {summary['unit']}, not {unit}")
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {kind: folder / name for kind, name in REPORT_FILES.items()}
    video_rows = [v.as_row() for v in results]
    frame_rows = [fm.as_row() for v in results for fm in v.frames]
    _atomic_write(paths["per_video"], lambda fh: fh.write(_csv_bytes(video_rows)))
    _atomic_write(paths["per_frame"], lambda fh: fh.write(_csv_bytes(frame_rows)))
    finite = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in summary.items()}
    text = json.dumps(finite, indent=2) + "\n"  # NaN as null: strict JSON readers reject NaN
    _atomic_write(paths["summary"], lambda fh: fh.write(text.encode()))
    plot_jf(results, paths["plot"])
    logger.info("wrote evaluation reports of %d videos to %s", len(results), folder)
    return paths


def format_table(summary: Mapping[str, Any]) -> str:
    """A short text table of a :func:`summarise` result for the console."""
    unit = summary.get("unit", "px")
    lines = [
        ("J (region)", f"{summary['J']:.4f}"),
        ("F (contour)", f"{summary['F']:.4f}"),
        ("J&F", f"{summary['J&F']:.4f}"),
        ("Dice", f"{summary['Dice']:.4f}"),
        (f"HD95 ({unit})", f"{summary['HD95']:.2f}"),
        (f"HD max ({unit})", f"{summary['HD_max']:.2f}"),
    ]
    width = max(len(k) for k, _ in lines)
    body = [f"{k:<{width}}  {v:>8}" for k, v in lines]
    counts = (f"{summary['n_videos']} videos, {summary['n_frames']} frames evaluated "
              f"(both empty {summary['n_frames_both_empty']}, missed {summary['n_missed']}, "
              f"false positive {summary['n_false_positive']})")
    return "\n".join([*body, counts])
