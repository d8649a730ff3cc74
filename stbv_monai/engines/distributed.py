"""Multi-process training under ``torchrun``: process group, devices, DDP, rank helpers.

``bundle/configs/multi_gpu_train.yaml`` merges over ``train.yaml`` and calls these; with one
process and no process group every helper falls back to single-process behaviour (rank 0 of 1),
so code may call them unconditionally. Who does what under ``torchrun``:

* training (teacher, student): every process runs the trainer on ``batch_size / world_size``
  clips of each global batch; ``DistributedDataParallel`` averages the gradients;
  :class:`~stbv_monai.handlers.ReduceLosses` averages the logged loss terms. Checkpoints, progress bar, validation,
  best-model and final-model files: rank 0 only (the handlers check the rank themselves).
* pseudo-labels: each process labels videos ``rank::world_size``; rank 0 merges the manifest
  after a barrier (:class:`~stbv_monai.engines.PseudoLabeller`).
* evaluation: rank 0 only, so the report is exactly that of a single-process run.

Clip draws are seeded per sample: the random transforms are re-seeded from
``(seed, pass, index)`` before each draw, and the sampler shuffles the videos alike on every
process and deals each global batch out over them (:mod:`stbv_monai.data.loaders`).
Step ``k`` therefore trains on the same clips whatever the number of processes or loader
workers; what still differs is listed in ``docs/benchmarks.md`` (batch-norm statistics and
loss bootstrapping per process, floating-point reduction order).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

__all__ = [
    "backend_for",
    "barrier",
    "cleanup",
    "ddp",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_distributed",
    "is_main_process",
    "local_device",
    "main_process_first",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")


def is_distributed() -> bool:
    """Whether a ``torch.distributed`` process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """This process's global rank (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    """The number of processes (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """Rank 0: the process that writes files, shows progress and evaluates."""
    return get_rank() == 0


def barrier() -> None:
    """Wait for every process (a no-op with one process)."""
    if get_world_size() > 1:
        dist.barrier()


def local_device() -> torch.device:
    """``cuda:LOCAL_RANK`` when CUDA is available, else the CPU (``LOCAL_RANK`` is set by ``torchrun``)."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def backend_for(device: torch.device | str) -> str:
    """NCCL for GPUs, Gloo for CPUs."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def init_distributed(device: torch.device | str | None = None, backend: str | None = None,
                     timeout_minutes: float = 30.0) -> torch.device:
    """Join the process group ``torchrun`` set up (``env://``) and pin this process to its device.

    Args:
        device: this process's device (default :func:`local_device`).
        backend: ``"nccl"``, ``"gloo"`` or ``None`` for :func:`backend_for` the device.
        timeout_minutes: how long a collective (e.g. the barrier at the end of a stage, while
            rank 0 validates and writes) may wait for the other processes.

    Returns:
        The device.
    """
    device = torch.device(device) if device is not None else local_device()
    if not is_distributed():
        missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
        if missing:
            raise RuntimeError(f"multi-process training needs torchrun (no {', '.join(missing)} in the "
                               "environment): torchrun --standalone --nproc_per_node=N -m monai.bundle run ...")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend or backend_for(device), timeout=timedelta(minutes=timeout_minutes))
    logger.info("process %d of %d (local rank %s) on %s, %s backend", get_rank(), get_world_size(),
                os.environ.get("LOCAL_RANK", "0"), device, dist.get_backend())
    if not is_main_process():  # rank 0 reports the engines' progress; the others only warnings
        logging.getLogger("ignite.engine").setLevel(logging.WARNING)
    return device


def cleanup() -> None:
    """Leave the process group (end of the run)."""
    if is_distributed():
        dist.destroy_process_group()


def main_process_first(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``fn`` on rank 0, then on the other processes (e.g. generating a missing dataset once)."""
    if not is_main_process():
        barrier()
    result = fn(*args, **kwargs)
    if is_main_process():
        barrier()
    return result


def ddp(module: torch.nn.Module, device: torch.device | str, compile: bool = False,
        find_unused_parameters: bool = False, sync_bn: bool = False) -> torch.nn.Module:
    """``DistributedDataParallel(module)`` on ``device`` (optionally ``torch.compile``-d).

    Wrap only what the trainer calls: the optimizer, checkpoints, validation and weight files
    keep using ``module`` itself (whose parameters DDP keeps equal across processes), so their
    keys and the checkpoints are those of a single-process run.

    Args:
        compile: ``torch.compile`` the wrapped module (DDP-aware graph breaks at bucket boundaries).
        find_unused_parameters: DDP's option, for variants whose forward skips parameters.
        sync_bn: batch-norm statistics over the global batch instead of each process's share
            (``SyncBatchNorm``, GPUs only); the layers are swapped in place, sharing their
            parameters and buffers, so the optimizer and the weight files are unaffected.

    The flags may be strings from the command line (``--compile false``), read as such.
    """
    device = torch.device(device)
    if sync_bn:
        if device.type != "cuda":
            raise ValueError("sync_bn needs GPUs: SyncBatchNorm does not run on the CPU")
        module = torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)  # the same root, its BN layers swapped
    wrapped = torch.nn.parallel.DistributedDataParallel(
        module, device_ids=[device] if device.type == "cuda" else None,
        find_unused_parameters=find_unused_parameters)
    return torch.compile(wrapped) if compile else wrapped
