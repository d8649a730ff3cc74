"""The network ``propagate`` serves, reloaded when the file it comes from changes.

On every request :meth:`ModelStore.get` asks :meth:`AppConfig.served_model` which file to
serve and compares its path, modification time and size with what is loaded; a change
(a finished ``two_shot`` run, a new base model) loads the new weights before the request is
answered, so no restart is needed. Files are published atomically (renamed into place), so a
half-written file is never read.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn

from stbv_monai.engines.workflow import load_model
from stbv_monai.label.app_config import AppConfig
from stbv_monai.networks import build_network

__all__ = ["ModelInfo", "ModelLoadError", "ModelStore"]

logger = logging.getLogger(__name__)

UNTRAINED_SEED = 0


class ModelLoadError(RuntimeError):
    """The served weights file exists but does not load into the configured network."""


@dataclass(frozen=True)
class ModelInfo:
    """What is being served.

    Attributes:
        path: the weights file, or ``None`` for untrained weights.
        mtime: its modification time (seconds since the epoch), or ``None``.
        network: the network preset.
        untrained: ``True`` when no weights file exists.
    """

    path: str | None
    mtime: float | None
    network: str
    untrained: bool

    def as_dict(self) -> dict:
        return asdict(self)


class ModelStore:
    """Loads and caches the served network.

    Args:
        config: the app configuration (network, device, which file to serve).
    """

    def __init__(self, config: AppConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._key: tuple | None = None
        self._network: nn.Module | None = None
        self._info: ModelInfo | None = None

    def get(self) -> tuple[nn.Module, ModelInfo]:
        """The network to use now (in eval mode, on the configured device) and what it is.

        Raises:
            ModelLoadError: the weights file does not fit the configured network or is unreadable.
        """
        path = self.config.served_model()
        key = _file_key(path)
        with self._lock:
            if self._network is None or key != self._key:
                self._network, self._info = self._load(path, key)
                self._key = key
            assert self._info is not None
            return self._network, self._info

    def _load(self, path: Path | None, key: tuple | None) -> tuple[nn.Module, ModelInfo]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(UNTRAINED_SEED)  # untrained weights are the same in every process
            network = build_network(self.config.network)
        if path is None:
            logger.warning(
                "no model file (base: %s, app: %s): propagate uses UNTRAINED weights; train with the "
                "two_shot task or pass --conf model_path", self.config.base_model, self.config.trained_model)
        try:
            network = load_model(network, path, self.config.device)
        except Exception as exc:
            raise ModelLoadError(f"model file {path} cannot be loaded into network "
                                 f"'{self.config.network}': {exc}") from exc
        mtime = key[1] / 1e9 if key else None
        info = ModelInfo(str(path) if path else None, mtime, self.config.network, path is None)
        logger.info("propagate serves %s", info)
        return network, info


def _file_key(path: Path | None) -> tuple | None:
    if path is None:
        return None
    try:
        st = path.stat()
    except OSError:
        return None
    return (str(path), st.st_mtime_ns, st.st_size)
