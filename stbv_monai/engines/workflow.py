"""Small glue the bundle configs call: load a trained network, run an engine over a split."""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from ignite.engine import Engine

from stbv_monai.data.io import atomic_path
from stbv_monai.networks.training import unwrap
from stbv_monai.networks import load_pretrained
from stbv_monai.networks.stcn import TRAINING_SIZE_KEY

__all__ = ["evaluate_protocols", "load_model", "publish", "run_engine", "up_to_date", "with_handlers"]

logger = logging.getLogger(__name__)


def load_model(network: torch.nn.Module, ckpt: str | os.PathLike | None, device: torch.device | str) -> torch.nn.Module:
    """Fill ``network`` from ``ckpt`` (strict: every key must fit), move it to ``device``, set eval mode.

    ``ckpt=None`` keeps the initial weights (for smoke tests and for scoring without a model).
    A file that does not record its training resolution keeps the one ``network`` was built
    with (the config's ``spatial_size``), with a warning.
    """
    if ckpt:
        report = load_pretrained(network, ckpt, strict=True)
        if TRAINING_SIZE_KEY in report.missing:
            size = unwrap(network).trained_at()
            logger.warning("%s does not record the resolution it was trained at; using the configured %s",
                           ckpt, "size " + "x".join(map(str, size)) if size else "native video size")
    else:
        logger.warning("no checkpoint given: the network keeps its initial (untrained) weights")
    return network.to(device).eval()


def up_to_date(output: str | os.PathLike, *inputs: str | os.PathLike) -> bool:
    """Whether ``output`` exists and is newer than every existing file of ``inputs`` (a done stage)."""
    if not os.path.isfile(output):
        return False
    made = os.path.getmtime(output)
    return all(made >= os.path.getmtime(p) for p in inputs if p and os.path.exists(p))


def run_engine(engine: Engine, handlers: Sequence[Any] = ()) -> dict[str, Any]:
    """Attach ``handlers`` (objects with ``attach(engine)``), run ``engine`` once over its data, return its metrics.

    ``engine`` is a MONAI ``Evaluator`` (its data were given when it was built), e.g. a
    :class:`~stbv_monai.engines.VideoEvaluator`.
    """
    for handler in handlers:
        handler.attach(engine)
    engine.run()
    return dict(engine.state.metrics)


def evaluate_protocols(protocols: Mapping[str, tuple[Engine, Sequence[Any]]],
                       summary_path: str | os.PathLike | None = None) -> dict[str, dict[str, Any]]:
    """Run one evaluator per protocol (each over the same videos, with its handlers); ``{protocol: metrics}``.

    With ``summary_path`` (the first protocol's ``summary.json``), the other protocols' summaries
    are added to it under their names, so one file holds every protocol's scores.
    """
    metrics, summaries = {}, {}
    for name, (engine, handlers) in protocols.items():
        metrics[name] = run_engine(engine, handlers)
        summaries[name] = next((h.summary for h in handlers if isinstance(getattr(h, "summary", None), dict)), None)
    if summary_path is not None and os.path.isfile(summary_path):
        merged = json.loads(Path(summary_path).read_text())
        merged.update({name: _finite(s) for name, s in list(summaries.items())[1:] if s})
        with atomic_path(summary_path) as tmp:
            Path(tmp).write_text(json.dumps(merged, indent=2) + "\n")
    return metrics


def _finite(summary: Mapping[str, Any]) -> dict[str, Any]:
    """NaN as null, as the reports write it (strict JSON readers reject NaN)."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in summary.items()}


def with_handlers(engine: Engine, handlers: Sequence[Any]) -> Engine:
    """Attach ``handlers`` to ``engine`` and return it (for engines built inside configs)."""
    for handler in handlers:
        handler.attach(engine)
    return engine


def publish(src: str | os.PathLike, dst: str | os.PathLike) -> str:
    """Copy the network a run ends with to the bundle's deliverable path (atomically; rank 0 only)."""
    import shutil

    from stbv_monai.engines.distributed import is_main_process

    if is_main_process() and os.path.abspath(src) != os.path.abspath(dst):
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
    logger.info("final network: %s", dst)
    return str(dst)
