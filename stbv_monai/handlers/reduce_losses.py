"""Average the logged loss terms over the processes of a ``torchrun`` training, for the progress bar and MLflow."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.distributed as dist
from ignite.engine import Engine, Events

from stbv_monai.engines.distributed import get_rank, get_world_size

__all__ = ["LOSS_KEYS", "ReduceLosses"]

logger = logging.getLogger(__name__)

#: The loss terms :class:`~stbv_monai.engines.ClipTrainer` puts in ``engine.state.output``.
LOSS_KEYS = ("loss", "loss_seg", "loss_gt", "loss_pseudo", "loss_stcs")


class ReduceLosses:
    """Average the loss terms of each iteration over all processes, for logging.

    ``DistributedDataParallel`` averages gradients, not the logged values: each process's
    ``engine.state.output`` holds the loss of its own share of the batch. Attached before the
    progress bar, this replaces them with the global-batch mean (one small all-reduce per
    iteration), and logs a line per process when the run completes.

    Args:
        keys: the output entries to average (those present; a term missing on some process
            is averaged over the processes that have it).
    """

    def __init__(self, keys: Sequence[str] = LOSS_KEYS) -> None:
        self.keys = tuple(keys)
        self.iterations = 0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.COMPLETED, self.report)

    def __call__(self, engine: Engine) -> None:
        out = engine.state.output
        self.iterations += 1
        if get_world_size() == 1 or not isinstance(out, dict):
            return
        nccl = dist.get_backend() == "nccl"
        device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
        present = [k in out for k in self.keys]
        values = [float(out[k].detach() if hasattr(out[k], "detach") else out[k]) if p else 0.0
                  for k, p in zip(self.keys, present)]
        stats = torch.tensor(values + [float(p) for p in present], dtype=torch.float64, device=device)
        dist.all_reduce(stats)
        sums, counts = stats[: len(self.keys)].cpu(), stats[len(self.keys):].cpu()
        for i, (key, p) in enumerate(zip(self.keys, present)):
            if p and counts[i] > 0:
                mean = float(sums[i] / counts[i])
                out[key] = torch.tensor(mean) if isinstance(out[key], torch.Tensor) else mean

    def report(self, engine: Engine) -> None:
        out = engine.state.output if isinstance(engine.state.output, dict) else {}
        loss = out.get("loss")
        logger.info("rank %d of %d: %d iterations run, last loss (all processes) %s", get_rank(), get_world_size(),
                    self.iterations, "n/a" if loss is None else f"{float(loss):.4f}")
