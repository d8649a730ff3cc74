"""The ``--conf`` keys of the MONAI Label app and where its model files live.

``monailabel start_server ... --conf KEY VALUE`` hands the app a dict of strings; this module
parses it once, at app start, into an :class:`AppConfig`.

Which weights ``propagate`` serves (decided again on every request, so new files are picked up
without a restart):

* the **base model**: ``--conf model_path PATH``; by default the bundle's deliverable
  ``<repo>/outputs/train/models/model.pt`` when it exists; ``--conf model_path none``: no base;
* the **app's own model**: ``<model_dir>/models/model.pt`` (``model_dir`` defaults to the
  app's ``model/`` folder), written by the ``two_shot`` train task or dropped in by hand.

Of those two files, the one modified last is served, so a finished ``two_shot`` training
replaces the base model and a newer base model replaces an old app model. With neither file,
the network keeps untrained (seeded) weights and a warning is logged.

``--conf max_upload_mb N`` (default 1024, i.e. 1 GiB) caps every request body: a larger upload
is answered HTTP 413 before it is stored (:mod:`stbv_monai.label.uploads`).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from stbv_monai import REPO_ROOT
from stbv_monai.errors import InputError
from stbv_monai.networks import PRESETS

__all__ = ["AppConfig", "DEFAULT_BASE_MODEL", "DEFAULT_MAX_UPLOAD_MB", "KNOWN_KEYS"]

logger = logging.getLogger(__name__)

#: The bundle's deliverable (``bash scripts/main.sh`` writes it).
DEFAULT_BASE_MODEL = REPO_ROOT / "outputs" / "train" / "models" / "model.pt"
#: ``--conf`` keys the app reads; others are reported once as probably misspelt.
KNOWN_KEYS = ("model_path", "model_dir", "network", "device", "mem_every", "top_k", "threshold", "max_upload_mb")
#: Default ``--conf max_upload_mb``: 1 GiB, several times a long ultrasound video as NIfTI.
DEFAULT_MAX_UPLOAD_MB = 1024
_NONE = {"", "none", "null", "untrained"}


@dataclass(frozen=True)
class AppConfig:
    """Parsed app configuration.

    Attributes:
        model_dir: the app's model folder (training runs, ``models/model.pt``, ``train_stats.json``).
        base_model: the base weights file (it may not exist yet), or ``None`` for no base model.
        network: network preset name (:data:`stbv_monai.networks.PRESETS`), used for serving and training.
        device: where propagation runs.
        device_explicit: whether ``--conf device`` was given (then training uses it too).
        mem_every: memorise every ``mem_every``-th frame during propagation.
        top_k: top-k memory readout (``None``: full softmax).
        threshold: probability above which a pixel is lesion in the returned mask.
        max_upload_bytes: the largest request body (upload) the server accepts.
    """

    model_dir: Path
    base_model: Path | None
    network: str = "stcn_small"
    device: torch.device = torch.device("cpu")
    device_explicit: bool = False
    mem_every: int = 5
    top_k: int | None = 20
    threshold: float = 0.5
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_MB * 2**20

    @property
    def trained_model(self) -> Path:
        """The app's own model file (the ``two_shot`` task publishes here)."""
        return self.model_dir / "models" / "model.pt"

    @property
    def runs_dir(self) -> Path:
        """Where each ``two_shot`` run keeps its bundle outputs."""
        return self.model_dir / "runs"

    @property
    def train_stats_path(self) -> Path:
        """Summary of the last successful ``two_shot`` run."""
        return self.model_dir / "train_stats.json"

    def served_model(self) -> Path | None:
        """The weights file to serve now: the newer of the base and the app's model, or ``None``."""
        best: tuple[int, Path] | None = None
        for path in (self.base_model, self.trained_model):
            if path is None:
                continue
            try:
                mtime = path.stat().st_mtime_ns
            except OSError:  # missing, or replaced while we look
                continue
            if path.is_file() and (best is None or mtime > best[0]):
                best = (mtime, path)
        return best[1] if best else None

    @classmethod
    def from_conf(cls, app_dir: str | os.PathLike, conf: Mapping[str, str] | None) -> AppConfig:
        """Parse MONAI Label's ``--conf`` dict (string values).

        Raises:
            InputError: an unknown network preset, a malformed number or device.
        """
        conf = {str(k): str(v) for k, v in (conf or {}).items()}
        unknown = sorted(k for k in conf if k not in KNOWN_KEYS and k != "server_mode")
        if unknown:
            logger.warning("ignoring unknown --conf key(s) %s (known: %s)", unknown, ", ".join(KNOWN_KEYS))
        model_dir = Path(conf.get("model_dir") or Path(app_dir) / "model").expanduser().resolve()
        network = conf.get("network", "stcn_small")
        if network not in PRESETS:
            raise InputError("--conf network", f"unknown network {network!r}; choose one of {sorted(PRESETS)}")
        device, explicit = _device(conf.get("device"))
        top_k = conf.get("top_k", "20")
        return cls(
            model_dir=model_dir,
            base_model=_base_model(conf),
            network=network,
            device=device,
            device_explicit=explicit,
            mem_every=_number("mem_every", conf.get("mem_every", "5"), int, 1),
            top_k=None if top_k.lower() in _NONE else _number("top_k", top_k, int, 1),
            threshold=_number("threshold", conf.get("threshold", "0.5"), float, 0.0, 1.0),
            max_upload_bytes=int(_number("max_upload_mb", conf.get("max_upload_mb", str(DEFAULT_MAX_UPLOAD_MB)),
                                         float, 0.001) * 2**20),
        )


def _base_model(conf: Mapping[str, str]) -> Path | None:
    if "model_path" not in conf:
        return DEFAULT_BASE_MODEL
    value = conf["model_path"].strip()
    if value.lower() in _NONE:
        return None
    path = Path(value).expanduser().resolve()
    if not path.is_file():
        logger.warning("--conf model_path %s does not exist (yet): it is served once it appears", path)
    return path


def _device(value: str | None) -> tuple[torch.device, bool]:
    if not value or value.lower() == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu"), False
    try:
        device = torch.device(value)
    except (RuntimeError, ValueError) as exc:
        raise InputError("--conf device", f"{value!r} is not a device (use cpu, cuda or cuda:N)") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        logger.warning("--conf device %s requested but CUDA is not available: using cpu", value)
        return torch.device("cpu"), True
    return device, True


def _number(key: str, value: str, kind: type, low: float, high: float | None = None) -> int | float:
    try:
        number = kind(value)
        if not math.isfinite(number):
            raise ValueError(value)
    except ValueError as exc:
        raise InputError(f"--conf {key}", f"{value!r} is not a{'n integer' if kind is int else ' number'}") from exc
    if number < low or (high is not None and number > high):
        limit = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise InputError(f"--conf {key}", f"{value} must be {limit}")
    return number
