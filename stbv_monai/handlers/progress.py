"""A progress bar for training stages that shows the losses and the iteration rate."""

from __future__ import annotations

from typing import Any, Sequence

from ignite.contrib.handlers import ProgressBar
from ignite.engine import Engine

__all__ = ["TrainingProgress"]


class TrainingProgress:
    """Ignite's ``ProgressBar`` over a stage's iterations, with its loss terms (rank 0 only under torchrun).

    Args:
        desc: the stage's name on the bar.
        keys: which entries of ``engine.state.output`` to show when present.
    """

    def __init__(self, desc: str, keys: Sequence[str] = ("loss", "loss_gt", "loss_pseudo", "loss_stcs")) -> None:
        self.desc, self.keys = desc, tuple(keys)

    def attach(self, engine: Engine) -> None:
        import ignite.distributed as idist

        if idist.get_rank() == 0:
            ProgressBar(persist=True, desc=self.desc).attach(engine, output_transform=self._losses)

    def _losses(self, output: dict[str, Any]) -> dict[str, float]:
        return {k: float(output[k].detach() if hasattr(output[k], "detach") else output[k])
                for k in self.keys if k in output}
