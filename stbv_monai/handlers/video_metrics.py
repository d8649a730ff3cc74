"""Score each video an engine segments and publish dataset metrics in ``engine.state.metrics``.

The metric maths is :mod:`stbv_monai.metrics`; this is the Ignite glue, shared by the evaluate
workflow and the validation of the training stages so both log the same names.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events

from stbv_monai.metrics import evaluate_video, format_table, summarise, write_reports
from stbv_monai.metrics.video import VideoMetrics

__all__ = ["METRIC_NAMES", "VideoMetricsHandler"]

logger = logging.getLogger(__name__)

#: ``engine.state.metrics`` name → key of :func:`stbv_monai.metrics.summarise` (names MLflow accepts).
METRIC_NAMES = {"J": "J", "F": "F", "JF": "J&F", "Dice": "Dice", "HD95": "HD95", "HD_max": "HD_max"}


class VideoMetricsHandler:
    """Per video: J, F, J&F, Dice, HD; per run: their means in ``engine.state.metrics``.

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
        out = engine.state.output
        spacing = out["spacing"] if self.use_spacing else None
        self.results.append(evaluate_video(out["pred"], out["gt"], out["references"], spacing, out.get("excluded"),
                                           name=out["name"], reference_rule=out.get("reference_rule", "")))

    def complete(self, engine: Engine) -> None:
        self.summary = summarise(self.results)
        engine.state.metrics.update({name: self.summary[key] for name, key in METRIC_NAMES.items()})
        engine.state.video_results = list(self.results)
        if self.output_dir is not None:
            write_reports(self.results, self.output_dir)
        if self.print_table:
            logger.info("evaluation of %d videos:\n%s", len(self.results), format_table(self.summary))
