"""Small glue the bundle configs call: load a trained network, run an engine over a split."""

from __future__ import annotations

import logging
import os
from typing import Any, Sequence

import torch
from ignite.engine import Engine

from stbv_monai.networks import load_pretrained

__all__ = ["load_model", "run_engine"]

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
