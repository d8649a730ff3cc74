"""Multi-process training under ``torchrun``: process group, devices, sharded clip loading, loss reduction.

``bundle/configs/multi_gpu_train.yaml`` merges over ``train.yaml`` and calls these; with one
process and no process group every helper falls back to single-process behaviour (rank 0 of 1),
so code may call them unconditionally. Who does what under ``torchrun``:

* training (teacher, student): every process runs the trainer on ``batch_size / world_size``
  clips of each global batch; ``DistributedDataParallel`` averages the gradients;
  :class:`ReduceLosses` averages the logged loss terms. Checkpoints, progress bar, validation,
  best-model and final-model files: rank 0 only (the handlers check the rank themselves).
* pseudo-labels: each process labels videos ``rank::world_size``; rank 0 merges the manifest
  after a barrier (:class:`~stbv_monai.engines.PseudoLabeller`).
* evaluation: rank 0 only, so the report is exactly that of a single-process run.

Clip draws are seeded per sample: the random transforms are re-seeded from
``(seed, pass, index)`` before each draw (:class:`SeededDraws`), and the sampler shuffles the
videos alike on every process and deals each global batch out over them (:class:`ShardSampler`).
Step ``k`` therefore trains on the same clips whatever the number of processes or loader
workers; what still differs is listed in ``docs/benchmarks.md`` (batch-norm statistics and
loss bootstrapping per process, floating-point reduction order).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from ignite.engine import Engine, Events
from monai.data import DataLoader
from monai.data.utils import set_rnd
from monai.utils import MAX_SEED
from torch.utils.data import Dataset, DistributedSampler


__all__ = [
    "ReduceLosses",
    "SeededDraws",
    "ShardSampler",
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
    "per_process_batch",
    "sharded_clip_loader",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: The loss terms :class:`~stbv_monai.engines.ClipTrainer` puts in ``engine.state.output``.
LOSS_KEYS = ("loss", "loss_seg", "loss_gt", "loss_pseudo", "loss_stcs")


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


def per_process_batch(global_batch_size: int, world_size: int | None = None) -> int:
    """The clips each process loads per step so that ``world_size`` processes make one global batch."""
    world_size = get_world_size() if world_size is None else world_size
    if global_batch_size % world_size:
        raise ValueError(f"batch_size {global_batch_size} (the global batch) is not divisible by the "
                         f"{world_size} processes; choose a multiple of {world_size}")
    return global_batch_size // world_size


class ShardSampler(DistributedSampler):
    """A ``DistributedSampler`` of whole global batches, reshuffled on every pass, yielding ``(index, pass)``.

    Each pass shuffles the videos alike on every process (seed ``seed + pass``), keeps
    ``floor(n / global_batch_size)`` global batches of them (at least one, repeating videos if
    there are fewer than a batch) and gives process ``rank`` every ``num_replicas``-th of
    those. Loaders of ``global_batch_size / num_replicas`` clips then make, at step ``k``, the
    same set of clips over all processes as one process with the whole batch, whatever
    ``num_replicas`` is, and every process runs the same number of steps per pass.

    A training stage is one Ignite epoch of ``iterations`` steps, so the loader is restarted
    many times within it; MONAI's trainer calls ``set_epoch`` only when an epoch starts, which
    would repeat one order in every pass. So each ``__iter__`` sets the epoch to the next pass
    number itself and hands it with each index to :class:`SeededDraws`.

    Args:
        dataset: anything with a length (the videos).
        global_batch_size: clips per optimiser step over all processes.
        seed: shuffling seed, the same on every process.
        num_replicas, rank: default: the process group's.
    """

    def __init__(self, dataset: Sequence[Any], global_batch_size: int, seed: int = 0,
                 num_replicas: int | None = None, rank: int | None = None) -> None:
        num_replicas = get_world_size() if num_replicas is None else num_replicas
        rank = get_rank() if rank is None else rank
        super().__init__(dataset, num_replicas, rank, shuffle=True, seed=seed)  # type: ignore[arg-type]
        per_process_batch(global_batch_size, self.num_replicas)  # checks divisibility
        n = len(dataset)
        if n == 0:
            raise ValueError("ShardSampler: the dataset is empty")
        self.total_size = max(n // global_batch_size, 1) * global_batch_size
        self.num_samples = self.total_size // self.num_replicas
        self.passes = 0

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        this_pass = self.passes
        self.passes += 1
        self.set_epoch(this_pass)
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.dataset), generator=g).tolist()  # type: ignore[arg-type]
        order = (order * -(-self.total_size // len(order)))[: self.total_size]
        for index in order[self.rank : self.total_size : self.num_replicas]:
            yield index, this_pass


class SeededDraws(Dataset):
    """A view of a dataset indexed by ``(index, pass)`` whose random transforms are re-seeded per draw.

    The seed of a draw comes from ``(seed, pass, index)`` alone, so a clip is the same
    whichever process or loader worker draws it.
    """

    def __init__(self, dataset: Dataset, seed: int = 0) -> None:
        self.dataset, self.seed = dataset, int(seed)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, this_pass = key
        draw_seed = np.random.SeedSequence([self.seed, int(this_pass), int(index)]).generate_state(1)[0]
        set_rnd(self.dataset, int(draw_seed) % MAX_SEED)
        return self.dataset[index]


def sharded_clip_loader(entries: Sequence[dict], transforms: Any, global_batch_size: int, num_workers: int = 0,
                        seed: int = 0, rank: int | None = None, world_size: int | None = None) -> DataLoader:
    """This process's loader of clips: its share of each global batch, seeded per draw.

    The multi-process counterpart of :func:`~stbv_monai.engines.clip_loader`: the batch is
    ``global_batch_size / world_size``; all processes shuffle alike and take disjoint shards,
    so step ``k``'s clips over all processes are those of step ``k`` with one process.

    Args:
        rank, world_size: default: the process group's.
    """
    from stbv_monai.data.dataset import video_dataset

    world_size = get_world_size() if world_size is None else world_size
    dataset = SeededDraws(video_dataset(entries, transforms), seed=seed)
    batch = per_process_batch(global_batch_size, world_size)
    sampler = ShardSampler(dataset, global_batch_size, seed=seed, num_replicas=world_size,
                           rank=get_rank() if rank is None else rank)
    return DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=num_workers,
                      persistent_workers=num_workers > 0,
                      generator=torch.Generator().manual_seed(seed))


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
