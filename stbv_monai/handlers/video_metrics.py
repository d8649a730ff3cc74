"""Score each video an evaluator segments: Ignite metrics for ``engine.state.metrics``, and reports.

The metric maths is :mod:`stbv_monai.metrics`; this is the Ignite glue, shared by the evaluate
workflow and the validation of the training stages so both log the same names. Each video is
scored once (:func:`video_scores` keeps the result in the iteration's output); the
:class:`VideoMean` metrics average those scores over videos, as :func:`~stbv_monai.metrics.summarise`
does, and :class:`VideoMetricsHandler` writes the per-video and per-frame reports.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
from ignite.engine import Engine, Events
from ignite.exceptions import NotComputableError
from ignite.metrics import Metric

from stbv_monai.metrics import evaluate_video, format_table, summarise, write_reports
from stbv_monai.metrics.video import VideoMetrics

__all__ = ["KEY_METRIC", "METRIC_NAMES", "VideoMean", "VideoMetricsHandler", "video_metrics", "video_scores"]

logger = logging.getLogger(__name__)

#: ``engine.state.metrics`` name → key of :func:`stbv_monai.metrics.summarise` (names MLflow accepts).
METRIC_NAMES = {"J": "J", "F": "F", "JF": "J&F", "Dice": "Dice", "HD95": "HD95", "HD_max": "HD_max"}
#: ``engine.state.metrics`` name → the :class:`~stbv_monai.metrics.video.VideoMetrics` field it averages.
_FIELDS = {"J": "j", "F": "f", "JF": "jf", "Dice": "dice", "HD95": "hd95", "HD_max": "hd_max"}
#: The metric that decides the best network (the evaluators' ``key_val_metric``).
KEY_METRIC = "JF"


def video_scores(output: dict[str, Any], use_spacing: bool = True) -> VideoMetrics:
    """The scores of the video in an evaluator's ``state.output``, computed once per iteration.

    Args:
        output: the output of :class:`~stbv_monai.engines.VideoEvaluator` (``pred``, ``gt``, ``references``...).
        use_spacing: Hausdorff distances in mm from the header spacing (``False``: pixels).
    """
    key = "scores" if use_spacing else "scores_px"
    if key not in output:
        output[key] = evaluate_video(output["pred"], output["gt"], output["references"],
                                     output["spacing"] if use_spacing else None, output.get("excluded"),
                                     name=output["name"], reference_rule=output.get("reference_rule", ""))
    return output[key]


class VideoMean(Metric):
    """An Ignite metric: the mean over videos of one per-video score (``J``, ``F``, ``JF``, ``Dice``, ``HD95``...).

    Hausdorff means are NaN when videos measure them in different units (mm and pixels), as in
    :func:`~stbv_monai.metrics.summarise`.
    """

    required_output_keys = None

    def __init__(self, name: str, use_spacing: bool = True,
                 output_transform: Callable[[Any], Any] = lambda out: (out,), device: str = "cpu") -> None:
        if name not in _FIELDS:
            raise ValueError(f"unknown video metric {name!r}; choose one of {', '.join(_FIELDS)}")
        self.field, self.use_spacing = _FIELDS[name], use_spacing
        self._values: list[float] = []
        self._units: set[str] = set()
        super().__init__(output_transform=output_transform, device=device)

    def reset(self) -> None:
        self._values, self._units = [], set()

    def update(self, output: tuple[dict[str, Any]]) -> None:
        scores = video_scores(output[0], self.use_spacing)
        self._values.append(float(getattr(scores, self.field)))
        self._units.add(scores.unit)

    def compute(self) -> float:
        if not self._values:
            raise NotComputableError("no video was scored")
        if self.field.startswith("hd") and len(self._units) > 1:
            return float("nan")
        return float(np.mean(self._values))


def video_metrics(use_spacing: bool = True) -> dict[str, Metric]:
    """One :class:`VideoMean` per name of :data:`METRIC_NAMES`, the key metric first."""
    names = [KEY_METRIC] + [n for n in METRIC_NAMES if n != KEY_METRIC]
    return {name: VideoMean(name, use_spacing) for name in names}


class VideoMetricsHandler:
    """Per video: J, F, J&F, Dice, HD (from :func:`video_scores`); per run: the summary and the reports.

    The run's numbers in ``engine.state.metrics`` are the evaluator's Ignite metrics
    (:func:`video_metrics`); :attr:`summary` holds the same means and the counts and statistics
    the reports show.

    Args:
        output_dir: where to write ``metrics_per_video.csv``, ``metrics_per_frame.csv``,
            ``summary.json`` and the plot after each run; ``None`` writes nothing.
        use_spacing: Hausdorff distances in mm from the header spacing (``False``: pixels).
        print_table: log a short table when a run completes.
    """

    def __init__(self, output_dir: str | os.PathLike | None = None, use_spacing: bool = True,
                 print_table: bool = True) -> None:
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.use_spacing = use_spacing
        self.print_table = print_table
        self.results: list[VideoMetrics] = []
        self.summary: dict[str, Any] = {}

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.complete)

    def reset(self, engine: Engine | None = None) -> None:
        self.results = []

    def __call__(self, engine: Engine) -> None:
        self.results.append(video_scores(engine.state.output, self.use_spacing))

    def complete(self, engine: Engine) -> None:
        self.summary = summarise(self.results)
        if self.output_dir is not None:
            write_reports(self.results, self.output_dir)
        if self.print_table:
            logger.info("evaluation of %d videos:\n%s", len(self.results), format_table(self.summary))
