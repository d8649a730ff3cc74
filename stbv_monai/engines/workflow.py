"""Small glue the bundle configs call: load a trained network, run an engine over a split."""

from __future__ import annotations

import logging
import os
from typing import Any, Sequence

import torch
from ignite.engine import Engine

from stbv_monai.networks import load_pretrained

__all__ = ["load_model", "publish", "run_engine", "with_handlers"]

logger = logging.getLogger(__name__)


def load_model(network: torch.nn.Module, ckpt: str | os.PathLike | None, device: torch.device | str) -> torch.nn.Module:
    """Fill ``network`` from ``ckpt`` (strict: every key must fit), move it to ``device``, set eval mode.

    ``ckpt=None`` keeps the initial weights (for smoke tests and for scoring without a model).
    """
    if ckpt:
        load_pretrained(network, ckpt, strict=True)
    else:
        logger.warning("no checkpoint given: the network keeps its initial (untrained) weights")
    return network.to(device).eval()


def run_engine(engine: Engine, data: Sequence[Any], handlers: Sequence[Any] = ()) -> dict[str, Any]:
    """Attach ``handlers`` (objects with ``attach(engine)``), run one pass over ``data``, return the metrics."""
    for handler in handlers:
        handler.attach(engine)
    engine.run(list(data), max_epochs=1)
    return dict(engine.state.metrics)


def with_handlers(engine: Engine, handlers: Sequence[Any]) -> Engine:
    """Attach ``handlers`` to ``engine`` and return it (for engines built inside configs)."""
    for handler in handlers:
        handler.attach(engine)
    return engine


def publish(src: str | os.PathLike, dst: str | os.PathLike) -> str:
    """Copy the network a run ends with to the bundle's deliverable path (atomically; rank 0 only)."""
    import shutil

    from stbv_monai.data.io import atomic_path
    from stbv_monai.engines.distributed import is_main_process

    if is_main_process() and os.path.abspath(src) != os.path.abspath(dst):
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
    logger.info("final network: %s", dst)
    return str(dst)
