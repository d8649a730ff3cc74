"""Experiment tracking with MLflow: the run tree of a workflow, and comparison of runs.

:class:`RunTree` gives every workflow invocation a parent run and every stage a child run;
:class:`stbv_monai.handlers.StageTracker` logs an engine's per-iteration numbers into it;
``scripts/compare_runs.py`` (:mod:`stbv_monai.tracking.compare`) tabulates finished trainings.
"""

from __future__ import annotations

import os
from typing import Any

from stbv_monai.tracking.params import bundle_params, flatten_config, git_commit
from stbv_monai.tracking.run_tree import PROTOCOL_PREFIXES, RECORD_NAME, RunTree, metric_key
from stbv_monai.tracking.store import default_uri, resolve_uri

__all__ = ["RECORD_NAME", "RunTree", "bundle_params", "default_uri", "flatten_config", "git_commit", "metric_key",
           "PROTOCOL_PREFIXES", "engine_timing", "first_existing", "protocol_metrics", "resolve_uri", "split_metrics"]


def split_metrics(metrics: dict, prefix: str = "test_") -> dict[str, float]:
    """An evaluation's metrics under the names runs are compared by (``JF`` -> ``test_JF``, ``Dice`` -> ``test_dice``)."""
    return {metric_key(k, prefix): v for k, v in (metrics or {}).items()}


def protocol_metrics(metrics: dict) -> dict[str, float]:
    """``{protocol: metrics}`` of :func:`~stbv_monai.engines.workflow.evaluate_protocols` as flat MLflow metrics."""
    return {k: v for name, m in (metrics or {}).items() for k, v in split_metrics(m, PROTOCOL_PREFIXES[name]).items()}


def first_existing(*paths: str | os.PathLike | None) -> str | os.PathLike | None:
    """The first of ``paths`` that exists (the best checkpoint, else the final one), or ``None``."""
    return next((p for p in paths if p is not None and os.path.exists(p)), None)


def engine_timing(engine: Any) -> dict[str, float]:
    """Items (videos) an Ignite engine processed and the seconds it took, for workflows without metrics."""
    seconds = float(engine.state.times.get("COMPLETED") or 0.0)
    items = int(engine.state.iteration)
    return {"videos": items, "seconds": seconds, "seconds_per_video": seconds / max(items, 1)}
