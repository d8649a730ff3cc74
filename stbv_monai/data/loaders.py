"""Loaders of training clips: one process (:func:`clip_loader`) or a shard of each global batch under ``torchrun``.

Clip draws under ``torchrun`` are seeded per sample: the random transforms are re-seeded from
``(seed, pass, index)`` before each draw (:class:`SeededDraws`), and the sampler shuffles the
videos alike on every process and deals each global batch out over them (:class:`ShardSampler`).
Step ``k`` therefore trains on the same clips whatever the number of processes or loader
workers (see :mod:`stbv_monai.engines.distributed` for who does what).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from monai.data import DataLoader
from monai.data.utils import set_rnd
from monai.utils import MAX_SEED
from torch.utils.data import Dataset, DistributedSampler

from stbv_monai.data.dataset import video_dataset
from stbv_monai.engines.distributed import get_rank, get_world_size

#: Builds a training stage's samples from its datalist entries and transform chain.
DatasetFactory = Callable[[Sequence[dict], Any], Dataset]

__all__ = ["SeededDraws", "ShardSampler", "clip_loader", "per_process_batch", "sharded_clip_loader"]


def clip_loader(entries: Sequence[dict], transforms: Any, batch_size: int, num_workers: int = 0,
                sampler: Any = None, seed: int = 0, dataset: DatasetFactory = video_dataset) -> DataLoader:
    """A loader of augmented clips drawn from cached whole videos (shuffled unless a sampler is given).

    ``dataset(entries, transforms)`` builds the samples: whole videos by default, still images
    as 1-frame videos for pretraining (:func:`~stbv_monai.data.still_dataset`).
    """
    samples = dataset(entries, transforms)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(samples, batch_size=batch_size, shuffle=sampler is None, sampler=sampler,
                      num_workers=num_workers, drop_last=len(samples) >= batch_size, generator=generator,
                      persistent_workers=num_workers > 0)


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
                        seed: int = 0, rank: int | None = None, world_size: int | None = None,
                        dataset: DatasetFactory = video_dataset) -> DataLoader:
    """This process's loader of clips: its share of each global batch, seeded per draw.

    The multi-process counterpart of :func:`clip_loader`: the batch is
    ``global_batch_size / world_size``; all processes shuffle alike and take disjoint shards,
    so step ``k``'s clips over all processes are those of step ``k`` with one process.

    Args:
        rank, world_size: default: the process group's.
        dataset: builds the samples from ``(entries, transforms)``, as in :func:`clip_loader`.
    """
    world_size = get_world_size() if world_size is None else world_size
    samples = SeededDraws(dataset(entries, transforms), seed=seed)
    batch = per_process_batch(global_batch_size, world_size)
    sampler = ShardSampler(samples, global_batch_size, seed=seed, num_replicas=world_size,
                           rank=get_rank() if rank is None else rank)
    return DataLoader(samples, batch_size=batch, sampler=sampler, num_workers=num_workers,
                      persistent_workers=num_workers > 0,
                      generator=torch.Generator().manual_seed(seed))
