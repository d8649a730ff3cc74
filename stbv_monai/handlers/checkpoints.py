"""Trainer checkpoints (save every N iterations and at the end, resume, prune) and the network files stages hand on.

MONAI's ``CheckpointSaver``/``CheckpointLoader`` do the saving and loading; :class:`TrainCheckpoints`
builds them when the trainer exists and keeps the folder to the newest files; :class:`SaveNetwork`
writes the bare network the next stage, evaluation, export and MONAI Label load.
"""

from __future__ import annotations

import glob
import logging
import os
import re
from pathlib import Path
from typing import Any, Mapping

import torch
from ignite.engine import Engine, Events
from monai.handlers import CheckpointLoader, CheckpointSaver

from stbv_monai.data.io import atomic_path
from stbv_monai.engines.distributed import is_main_process
from stbv_monai.networks.training import unwrap

__all__ = ["SaveNetwork", "TrainCheckpoints", "latest_checkpoint", "prune_checkpoints"]

logger = logging.getLogger(__name__)


def latest_checkpoint(folder: str | os.PathLike) -> str | None:
    """The most recently written trainer checkpoint in ``folder``, if any.

    Ordered by modification time: ``checkpoint_final.pt`` is also written when a run is
    stopped early (Ignite fires ``COMPLETED`` after ``terminate()``), so the name alone does
    not say which state is newest.
    """
    found = glob.glob(os.path.join(folder, "checkpoint_*.pt"))
    return max(found, key=os.path.getmtime) if found else None


_ITERATION_FILE = re.compile(r"checkpoint_iteration=(\d+)\.pt$")


def prune_checkpoints(folder: str | os.PathLike, keep: int) -> list[str]:
    """Delete all but the ``keep`` newest ``checkpoint_iteration=N.pt`` in ``folder``; the deleted paths.

    MONAI's ``CheckpointSaver`` keeps its own last ``n_saved`` files, but a resumed run's saver
    does not know the files the killed run wrote, which would then stay forever.
    """
    found = sorted((int(m.group(1)), p) for p in glob.glob(os.path.join(folder, "checkpoint_iteration=*.pt"))
                   if (m := _ITERATION_FILE.search(p)))
    stale = [p for _, p in found[:-keep]] if keep > 0 else []
    for path in stale:
        os.remove(path)
    return stale


class TrainCheckpoints:
    """Save network, optimizer and trainer every ``interval`` iterations and at the end (MONAI
    ``CheckpointSaver``); with ``resume``, first restore the latest of them (MONAI
    ``CheckpointLoader``) so the iteration count, optimizer moments and weights continue.
    Only the ``n_saved`` newest interval checkpoints stay in the folder, a resumed run's included.

    The trainer itself is part of what is saved, and it does not exist yet when configs build
    handlers, so both MONAI handlers are created in :meth:`attach`. ``extra`` names further
    objects with ``state_dict``/``load_state_dict`` to save and restore (an EMA teacher).
    """

    def __init__(self, folder: str | os.PathLike, network: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 interval: int = 100, resume: bool = False, n_saved: int = 2,
                 extra: Mapping[str, Any] | None = None) -> None:
        self.folder, self.network, self.optimizer = str(folder), network, optimizer
        self.interval, self.resume, self.n_saved = interval, resume, n_saved
        self.extra = dict(extra or {})
        self.engine: Engine | None = None

    def attach(self, engine: Engine) -> None:
        self.engine = engine
        objects = {"network": self.network, "optimizer": self.optimizer, "trainer": engine, **self.extra}
        path = latest_checkpoint(self.folder) if self.resume else None
        if self.resume and path is None:
            logger.warning("resume: no checkpoint in %s, starting from iteration 0", self.folder)
        if path is not None:
            CheckpointLoader(load_path=path, load_dict=objects, map_location=str(engine.state.device)).attach(engine)
            engine.add_event_handler(Events.STARTED, self._keep_budget, engine.state.epoch_length)
            logger.info("resuming from %s", path)
        CheckpointSaver(save_dir=self.folder, save_dict=objects, save_interval=self.interval, epoch_level=False,
                        n_saved=self.n_saved, save_final=True, final_filename="checkpoint_final.pt").attach(engine)
        engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.interval), self._prune)

    @staticmethod
    def _keep_budget(engine: Engine, budget: int) -> None:
        """After loading, train to the configured budget, not the checkpoint's (a raised ``iterations`` trains on)."""
        if engine.state.epoch_length != budget and engine.state.iteration < budget:
            logger.info("resume: the budget is now %d iterations (the checkpoint's run had %d)", budget,
                        engine.state.epoch_length)
            engine.state.epoch_length, engine.state.epoch = budget, 0

    def _prune(self, engine: Engine) -> None:
        if is_main_process():
            prune_checkpoints(self.folder, self.n_saved)

    def finished(self) -> bool:
        """Whether the latest checkpoint already holds the attached trainer's whole budget (a done stage)."""
        path = latest_checkpoint(self.folder)
        if self.engine is None or path is None:
            return False
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("trainer", {})
        budget = (self.engine.state.epoch_length or 0) * (self.engine.state.max_epochs or 0)
        return budget > 0 and int(state.get("iteration", 0)) >= budget


class SaveNetwork:
    """Write the network's weights to ``path`` atomically when the run completes.

    This is the file the next stage, evaluation, ``ckpt_export`` and MONAI Label load: the
    state dict of the bundle's ``network_def`` (a :class:`~stbv_monai.networks.PropagationNet`),
    i.e. STCN's key names under ``network.``. :func:`~stbv_monai.networks.load_pretrained`
    reads it with or without that prefix. Under ``torchrun`` only rank 0 writes it (the
    weights are the same on every process).
    """

    def __init__(self, path: str | os.PathLike, network: torch.nn.Module) -> None:
        self.path, self.network = Path(path), network

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine | None = None) -> Path:
        if not is_main_process():
            return self.path
        state = {f"network.{k}": v.detach().cpu() for k, v in unwrap(self.network).state_dict().items()}
        with atomic_path(self.path) as tmp:
            torch.save(state, tmp)
        logger.info("saved network to %s", self.path)
        return self.path
