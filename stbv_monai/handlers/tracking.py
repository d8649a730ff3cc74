"""Log a training stage into MLflow: losses and learning rate per iteration, validation metrics per validation.

A subclass of MONAI's ``MLFlowHandler``: its engine events, iteration filter and learning-rate
logging are kept; the run it logs to is the current stage run of a
:class:`~stbv_monai.tracking.RunTree` instead of one it opens and closes itself (a stage is one
child of the training's parent run), and failures go through the tree, which never lets tracking
stop a training. Validation metrics (``val_*``, put on ``engine.state.metrics`` by
:class:`PeriodicValidation`) are logged at the iteration they were computed; at the end the loss
curves become a PNG artifact.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Iterator

from ignite.engine import Engine, Events
from monai.handlers import MLFlowHandler

from stbv_monai.tracking import RunTree

__all__ = ["StageTracker", "scalar_outputs"]

_INERT_URI = "http://127.0.0.1:9"  # never contacted: the handler logs through its RunTree's client


@contextmanager
def _inert_client() -> Iterator[None]:
    """Let ``MLFlowHandler.__init__`` build its (unused) client without touching a store.

    It prefers ``MLFLOW_TRACKING_URI``; a SQLite store there would be opened, migrated and created
    eagerly (seconds, and on every process under torchrun, racing rank 0).
    """
    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["MLFLOW_TRACKING_URI"] = saved


def scalar_outputs(output: Any) -> dict[str, float] | None:
    """The numbers of a trainer's ``state.output`` dict (losses, ``top_p``), tensors of one element included."""
    if not isinstance(output, dict):
        return None
    out = {}
    for key, value in output.items():
        if hasattr(value, "numel") and value.numel() == 1:
            value = value.detach().item()
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = float(value)
    return out


class StageTracker(MLFlowHandler):
    """Attach to a stage's trainer, after its validation handler (so new ``val_*`` metrics are seen).

    Args:
        tree: the run tree of the workflow; nothing is logged where it is not active.
        every: log the losses every ``every`` iterations (validation metrics are always logged).
        plot_path: where to write the loss-curve PNG logged with the stage (``None``: no plot).
    """

    def __init__(self, tree: RunTree, every: int = 1, plot_path: str | os.PathLike | None = None) -> None:
        every = max(int(every), 1)
        with _inert_client():
            super().__init__(tracking_uri=_INERT_URI, iteration_log=lambda _, i: i % every == 0,
                             epoch_log=False, output_transform=scalar_outputs, optimizer_param_names="lr")
        self.tree, self.plot_path = tree, plot_path
        self.history: dict[str, list[tuple[int, float]]] = {}
        self._logged_metrics: dict[str, float] = {}

    def attach(self, engine: Engine) -> None:
        super().attach(engine)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._log_new_metrics)

    def start(self, engine: Engine) -> None:
        """Nothing to open: the stage's run is the tree's current run."""
        self.history, self._logged_metrics = {}, {}

    def _log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        for key, value in metrics.items():
            if key.startswith("loss"):
                self.history.setdefault(key, []).append((step or 0, float(value)))
        self.tree.log_metrics(metrics, step=step)

    def _log_params(self, params: dict[str, Any]) -> None:
        return None  # the tree logs the config once per run

    def _log_new_metrics(self, engine: Engine) -> None:
        new = {k: v for k, v in engine.state.metrics.items() if self._logged_metrics.get(k) != v}
        if new:
            self._logged_metrics.update(new)
            self.tree.log_metrics(new, step=engine.state.iteration)

    def complete(self, engine: Engine) -> None:
        """Log the final validation, the best score, and the loss curves as a plot."""
        self._log_new_metrics(engine)
        if getattr(engine.state, "best_metric_epoch", -1) > 0:  # MONAI's workflows start it at -1
            self.tree.log_metrics({"best_val_JF": engine.state.best_metric,
                                   "best_iteration": engine.state.best_metric_epoch})
        if self.plot_path and self.history and self.tree.active:
            from stbv_monai.visualize import plot_curves

            self.tree.log_artifacts([plot_curves(self.history, self.plot_path)], artifact_path="plots")

    def close(self) -> None:
        return None  # the tree closes the run
