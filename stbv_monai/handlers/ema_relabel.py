"""The "pseudo-label update" baseline (Yan et al., CVPR 2023): an EMA teacher relabels pseudo frames online.

During re-training an exponential moving average of the student predicts the clip; where it
is confident (probability ≥ ``threshold`` or ≤ 1 − ``threshold``) its label replaces the stored
pseudo-label, elsewhere the stored one is kept. Ground-truth frames are never touched. This is
the comparison row "STCN w/ update" of the paper's Table 1; it is a handler (for the EMA update)
that is also the trainer's ``batch_transform`` (for the relabelling), not a flag in the trainer.
The average is Ignite's :class:`~ignite.handlers.EMAHandler`; the EMA weights are saved in the
trainer checkpoint (pass this object to ``TrainCheckpoints(extra=...)``) so ``--resume`` continues
them, and the iteration is the trainer's own, restored with it.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from ignite.engine import Engine
from ignite.handlers import EMAHandler

from stbv_monai.constants import SOURCE_PSEUDO

__all__ = ["EMARelabel"]


class EMARelabel:
    """EMA teacher of ``network`` that relabels confident pixels of pseudo-labelled clip frames.

    Args:
        network: the student being trained (a :class:`~stbv_monai.networks.ClipTrainingWrapper`).
        alpha: EMA decay per iteration (Yan et al.: 0.995).
        threshold: confidence needed to overwrite a pseudo-label (Yan et al.'s phase 2: 0.99).
        start_iteration: iterations before relabelling starts (the EMA needs time to be useful).
    """

    def __init__(self, network: torch.nn.Module, alpha: float = 0.995, threshold: float = 0.99,
                 start_iteration: int = 0) -> None:
        self.handler = EMAHandler(network, momentum=1.0 - alpha, handle_buffers="copy")
        self.threshold, self.start = threshold, start_iteration
        self.engine: Engine | None = None

    @property
    def ema(self) -> torch.nn.Module:
        """The averaged network (eval mode)."""
        return self.handler.ema_model

    def attach(self, engine: Engine) -> None:
        self.engine = engine
        self.handler.attach(engine)

    def state_dict(self) -> dict[str, Any]:
        """The EMA weights, for the trainer checkpoint."""
        return self.ema.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.ema.load_state_dict(state)

    @torch.no_grad()
    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Relabel the confident pixels of pseudo frames ``1..N-1`` of each clip in ``batch``."""
        iteration = self.engine.state.iteration - 1 if self.engine is not None else 0  # iterations done
        if iteration < self.start:
            return batch
        probs = self.ema(batch["image"].unsqueeze(2), batch["label"][:, :1])["probs"][:, :, 0]
        confident = (probs >= self.threshold) | (probs <= 1 - self.threshold)
        pseudo = (batch["source"][:, 1:] == SOURCE_PSEUDO)[..., None, None]
        label = batch["label"].clone()
        label[:, 1:] = torch.where(confident & pseudo, (probs > 0.5).to(label.dtype), label[:, 1:])
        return dict(batch, label=label)
