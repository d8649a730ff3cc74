"""A training stage (pretrain, teacher, student, a baseline) built from one definition plus its differences.

Every stage trains a :class:`~stbv_monai.networks.ClipTrainingWrapper` with :class:`ClipTrainer`
and the same handlers: progress bar, checkpoints with resume, validation keeping the best network,
the final network file and the MLflow child run. Stages differ only in their data (entries,
clip transforms, a batch transform), budget, losses and starting weights. The config states those
for each stage; :class:`StageSettings` holds what they share; :class:`TrainingStage` builds the rest.
MONAI's config system cannot merge one block into another (its YAML loader refuses ``<<`` merge
keys), hence this factory instead of a shared config block.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from stbv_monai.data.dataset import video_dataset
from stbv_monai.engines.evaluator import VideoEvaluator
from stbv_monai.engines.trainer import ClipTrainer
from stbv_monai.errors import InputError
from stbv_monai.handlers.checkpoints import SaveNetwork, TrainCheckpoints
from stbv_monai.handlers.progress import TrainingProgress
from stbv_monai.handlers.reduce_losses import ReduceLosses
from stbv_monai.handlers.tracking import StageTracker
from stbv_monai.handlers.validation import PeriodicValidation
from stbv_monai.handlers.video_metrics import video_metrics
from stbv_monai.losses import SegmentationLoss, STCSLoss
from stbv_monai.networks.checkpoint import LoadReport, load_pretrained
from stbv_monai.networks.stcn import TRAINING_SIZE_KEY
from stbv_monai.tracking import RunTree, first_existing

__all__ = ["StageSettings", "TrainingStage", "skip_pretraining"]

logger = logging.getLogger(__name__)


@dataclass
class StageSettings:
    """What every training stage of a run shares (one config block, ``stage_settings``).

    Args:
        output_dir: the run folder; a stage works in ``<output_dir>/<name>``.
        models_dir: where stages write their networks (``<name>.pt``, ``<name>_best.pt``).
        device: where training runs.
        tracking: the workflow's MLflow run tree (each stage is a child run).
        lr: Adam's learning rate.
        batch_size: clips per optimiser step (the global batch under ``torchrun``).
        num_workers: loader worker processes.
        checkpoint_interval: iterations between trainer checkpoints.
        val_interval: iterations between validations (0: at the end of the stage only).
        val_entries: the validation videos (empty: no validation, the final weights are kept).
        inferer: how validation predicts a video.
        bootstrap_warm: bootstrapped CE's warm-up as fractions of the stage's budget (STCN:
            plain CE until 20K, hardest 15 % by 70K of 150K iterations).
        resume: continue from the latest checkpoint of each stage.
        amp: bfloat16 autocast in the trainer.
        compile: ``torch.compile`` the network the trainer calls.
        tracking_every: iterations between loss points in MLflow.
        init_sources: named starting points a stage's ``init_from`` picks from (``pretrain``,
            ``teacher``, ...; a ``None`` value means random weights).
        loader: builds a stage's loader (``None``: :func:`~stbv_monai.data.clip_loader`; the sharded one under torchrun).
        parallel: wraps the network the trainer calls (DDP under torchrun); ``None``: as is.
        reduce_losses: average the logged losses over processes (torchrun).
    """

    output_dir: str
    models_dir: str
    device: torch.device | str
    tracking: RunTree
    lr: float = 1e-4
    batch_size: int = 4
    num_workers: int = 0
    checkpoint_interval: int = 100
    val_interval: int = 0
    val_entries: Sequence[dict] = ()
    inferer: Any = None
    bootstrap_warm: tuple[float, float] = (0.13, 0.47)
    resume: bool = False
    amp: bool = False
    compile: bool = False
    tracking_every: int = 1
    init_sources: Mapping[str, str | None] = field(default_factory=dict)
    loader: Callable[..., Any] | None = None
    parallel: Callable[[torch.nn.Module], torch.nn.Module] | None = None
    reduce_losses: bool = False


class TrainingStage:
    """One training stage: its loader, optimiser, losses, handlers and :class:`ClipTrainer`, built on first use.

    Args:
        name: the stage's name (folder, network file, MLflow child run, progress bar).
        settings: what all stages share.
        network: the :class:`~stbv_monai.networks.ClipTrainingWrapper` to train, or a function
            building it on first use (a stage that may not run then draws no random weights, so
            the stages after it start from the same random state either way).
        entries: the datalist entries clips are drawn from, or a function returning them (called
            when the loader is built, so that e.g. still images are found or generated only
            when pretraining actually runs).
        transforms: the clip chain applied on every draw.
        iterations: the budget (optimiser steps).
        model_path: the final network's file (default ``<models_dir>/<name>.pt``).
        seed: seed of the loader's shuffling.
        dataset: builds the samples from ``(entries, transforms)`` (videos; stills for pretraining).
        stcs_loss: the space-time consistency loss, or ``None``.
        batch_transform: applied to each batch on the device (CutMix, the EMA relabelling).
        init_from: the name of one of ``settings.init_sources`` to start from, or ``"none"``.
        init: a checkpoint to start from (our ``.pt``, official STCN, ImageNet ResNet);
            overrides ``init_from``. Loaded with :func:`~stbv_monai.networks.load_pretrained`,
            its report logged; the stage keeps training at its own resolution.
        handlers: further trainer handlers, attached after the standard ones.
        checkpoint_extra: further objects saved in (and restored from) the trainer checkpoints.
    """

    def __init__(self, name: str, settings: StageSettings, network: torch.nn.Module | Callable[[], torch.nn.Module],
                 entries: Sequence[dict] | Callable[[], Sequence[dict]],
                 transforms: Any, iterations: int, model_path: str | os.PathLike | None = None, seed: int = 0,
                 dataset: Callable[[Sequence[dict], Any], Any] = video_dataset, stcs_loss: STCSLoss | None = None,
                 batch_transform: Callable[[dict], dict] | None = None, init_from: str = "none",
                 init: str | os.PathLike | None = None, handlers: Sequence[Any] = (),
                 checkpoint_extra: Mapping[str, Any] | None = None) -> None:
        self.name, self.settings, self.iterations, self.seed = name, settings, int(iterations), seed
        self._network = network
        self.entries, self.transforms, self.dataset = entries, transforms, dataset
        self.stcs_loss, self.batch_transform = stcs_loss, batch_transform
        self.init = str(init) if init else _init_source(name, init_from, settings.init_sources)
        self.extra_handlers, self.checkpoint_extra = list(handlers), dict(checkpoint_extra or {})
        self.dir = Path(settings.output_dir) / name
        self.model_path = str(model_path or Path(settings.models_dir) / f"{name}.pt")
        stem, suffix = os.path.splitext(self.model_path)
        self.best_path = f"{stem}_best{suffix or '.pt'}"

    # ------------------------------------------------------------------ what the workflow calls
    def run(self) -> Any:
        """Train as the run tree's child run ``name`` (skipped on resume when already done)."""
        return self.settings.tracking.stage(self.name, self.train, done=self.finished,
                                            artifacts=lambda: [first_existing(self.best_path, self.model_path)])

    def train(self) -> Any:
        """Load the starting weights (if any), then run the trainer over the budget."""
        if self.init:
            self.load_init()
        return self.trainer.run()

    def finished(self) -> bool:
        """Whether the latest checkpoint holds the whole budget and the network file exists (a done stage)."""
        self.trainer  # noqa: B018 -- attaches the checkpoints, which read the budget from the trainer
        return self.checkpoints.finished() and os.path.isfile(self.model_path)

    def load_init(self) -> LoadReport:
        """Fill the network from ``init`` (a missing file is an :class:`~stbv_monai.errors.InputError`)."""
        if not os.path.isfile(self.init):
            raise InputError(self.init, f"{self.name}: the checkpoint to start from does not exist"
                             + ("; run `pretrain` first, or set --init PATH or --pretraining false"
                                if Path(self.init).name == "pretrain.pt" else ""))
        logger.info("%s: starting from %s", self.name, self.init)
        return load_pretrained(self.network, self.init, skip=(TRAINING_SIZE_KEY,))

    # ------------------------------------------------------------------ parts, built on first use
    @cached_property
    def network(self) -> torch.nn.Module:
        network = self._network if isinstance(self._network, torch.nn.Module) else self._network()
        return network.to(self.settings.device)

    @cached_property
    def optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.network.parameters(), lr=self.settings.lr)

    @cached_property
    def seg_loss(self) -> SegmentationLoss:
        start, end = self.settings.bootstrap_warm
        return SegmentationLoss(start_warm=int(start * self.iterations), end_warm=int(end * self.iterations))

    @cached_property
    def dataloader(self) -> Any:
        from stbv_monai.data.loaders import clip_loader  # not at import: data.loaders imports engines.distributed

        s = self.settings
        entries = self.entries() if callable(self.entries) else self.entries
        loader = s.loader or clip_loader
        return loader(entries, self.transforms, s.batch_size, s.num_workers, seed=self.seed, dataset=self.dataset)

    @cached_property
    def validator(self) -> VideoEvaluator:
        s = self.settings
        return VideoEvaluator(s.inferer, s.val_entries, self.network, s.device, metrics=video_metrics())

    @cached_property
    def checkpoints(self) -> TrainCheckpoints:
        s = self.settings
        return TrainCheckpoints(self.dir / "checkpoints", self.network, self.optimizer, s.checkpoint_interval,
                                s.resume, extra=self.checkpoint_extra)

    @cached_property
    def handlers(self) -> list[Any]:
        """Progress, checkpoints, validation (best network), final network, MLflow; then the extra ones."""
        s = self.settings
        standard = [
            TrainingProgress(desc=self.name),
            self.checkpoints,
            PeriodicValidation(self.validator, s.val_interval, SaveNetwork(self.best_path, self.network)),
            SaveNetwork(self.model_path, self.network),
            StageTracker(s.tracking, s.tracking_every, self.dir / "losses.png"),
        ]
        return ([ReduceLosses()] if s.reduce_losses else []) + standard + self.extra_handlers

    @cached_property
    def trainer(self) -> ClipTrainer:
        s = self.settings
        if s.parallel is not None:
            network = s.parallel(self.network)
        else:
            network = torch.compile(self.network) if s.compile else self.network
        return ClipTrainer(device=s.device, max_epochs=1, epoch_length=self.iterations,
                           train_data_loader=self.dataloader, network=network, optimizer=self.optimizer,
                           seg_loss=self.seg_loss, stcs_loss=self.stcs_loss, batch_transform=self.batch_transform,
                           amp=s.amp, train_handlers=self.handlers)


def _init_source(stage: str, init_from: str, sources: Mapping[str, str | None]) -> str | None:
    """The checkpoint ``init_from`` names (``"none"``: random weights)."""
    if init_from in (None, "none", ""):
        return None
    if init_from not in sources:
        raise ValueError(f"{stage}: init_from must be one of {sorted(sources) + ['none']}, got {init_from!r}")
    return sources[init_from]


def skip_pretraining(init: str | os.PathLike | None) -> None:
    """Say why the ``pretrain`` stage does not run: ``--init`` gives the starting weights, or pretraining is off."""
    if init:
        logger.info("pretrain: skipped, every stage starts from --init %s", init)
    else:
        logger.info("pretrain: off (--pretraining false), stages start from random weights")
