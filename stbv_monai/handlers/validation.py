"""Validate a training stage on whole videos every N iterations, and keep the best network.

MONAI's ``ValidationHandler`` drives a MONAI ``Evaluator`` over batches; validation here
propagates through whole videos with :class:`~stbv_monai.engines.VideoEvaluator` and scores them
with the same :class:`~stbv_monai.handlers.VideoMetricsHandler` as the evaluate workflow, so
the names match (``J``, ``F``, ``JF``, ``Dice``, ``HD95``; ``val_``-prefixed on the trainer).

Under ``torchrun`` validation runs on rank 0 only, on the full validation split, with rank 0's
network (the one that is saved): its numbers and its choice of best network are those of a
single process. The other processes wait at their next collective (the next iteration's
gradient all-reduce, or the barrier that ends the stage).

Validation is optional: with no validation entries (a datalist without a ``validation`` split)
nothing is attached, one log line says so, and the stage's final weights are what it keeps.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ignite.engine import Engine, Events
from monai.engines import Evaluator

from stbv_monai.engines.distributed import is_main_process

__all__ = ["PeriodicValidation"]

logger = logging.getLogger(__name__)


class PeriodicValidation:
    """Run ``evaluator`` over its validation videos every ``interval`` iterations and at the end of training.

    Args:
        evaluator: a :class:`~stbv_monai.engines.VideoEvaluator` of the validation entries, with metrics.
        interval: iterations between validations (0: only at the end).
        best_saver: called (e.g. a :class:`~stbv_monai.handlers.SaveNetwork`) when
            ``key_metric`` improves, to keep the best network.
        key_metric: the metric that decides "best".

    Does nothing on processes other than rank 0, nor without validation videos.
    """

    def __init__(self, evaluator: Evaluator, interval: int = 0, best_saver: Any = None,
                 key_metric: str = "JF") -> None:
        self.evaluator = evaluator
        self.entries = list(evaluator.data_loader)
        self.interval, self.best_saver, self.key_metric = interval, best_saver, key_metric
        self.best = float("-inf")

    def attach(self, engine: Engine) -> None:
        if not self.entries:
            if is_main_process():
                logger.info("no validation split in the datalist: no validation runs, the final weights are kept")
            return
        if self.interval > 0:
            engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.interval), self)
        engine.add_event_handler(Events.COMPLETED, self._final)

    def _final(self, engine: Engine) -> None:
        if self.interval <= 0 or engine.state.iteration % self.interval:
            self(engine)

    def __call__(self, engine: Engine) -> None:
        if not self.entries or not is_main_process():
            return
        self.evaluator.run()
        metrics = dict(self.evaluator.state.metrics)
        engine.state.metrics.update({f"val_{k}": v for k, v in metrics.items()})
        score = metrics.get(self.key_metric, float("-inf"))
        logger.info("iteration %d: validation %s", engine.state.iteration,
                    ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        if score > self.best:
            self.best = score
            engine.state.best_metric, engine.state.best_metric_epoch = score, engine.state.iteration
            if self.best_saver is not None:
                self.best_saver()
