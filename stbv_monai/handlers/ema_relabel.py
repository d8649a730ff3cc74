"""The "pseudo-label update" baseline (Yan et al., CVPR 2023): an EMA teacher relabels pseudo frames online.

During re-training an exponential moving average of the student predicts the clip; where it
is confident (probability ≥ ``threshold`` or ≤ 1 − ``threshold``) its label replaces the stored
pseudo-label, elsewhere the stored one is kept. Ground-truth frames are never touched. This is
the comparison row "STCN w/ update" of the paper's Table 1; it is a handler (for the EMA update)
that is also the trainer's ``batch_transform`` (for the relabelling), not a flag in the trainer.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from ignite.engine import Engine, Events

from stbv_monai.data.dataset import SOURCE_PSEUDO

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
        self.network, self.alpha, self.threshold, self.start = network, alpha, threshold, start_iteration
        self.ema = copy.deepcopy(network).eval().requires_grad_(False)
        self.iteration = 0
        self.relabelled = 0.0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.update)

    @torch.no_grad()
    def update(self, engine: Engine | None = None) -> None:
        """``ema ← alpha · ema + (1 − alpha) · student`` (buffers copied)."""
        self.iteration += 1
        student = dict(self.network.named_parameters())
        for name, p in self.ema.named_parameters():
            p.mul_(self.alpha).add_(student[name].detach(), alpha=1 - self.alpha)
        for (_, b), (_, sb) in zip(self.ema.named_buffers(), self.network.named_buffers()):
            b.copy_(sb)

    @torch.no_grad()
    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Relabel the confident pixels of pseudo frames ``1..N-1`` of each clip in ``batch``."""
        if self.iteration < self.start:
            return batch
        probs = self.ema(batch["image"].unsqueeze(2), batch["label"][:, :1])["probs"][:, :, 0]
        confident = (probs >= self.threshold) | (probs <= 1 - self.threshold)
        pseudo = (batch["source"][:, 1:] == SOURCE_PSEUDO)[..., None, None]
        replace = confident & pseudo
        label = batch["label"].clone()
        label[:, 1:] = torch.where(replace, (probs > 0.5).to(label.dtype), label[:, 1:])
        self.relabelled = float(replace.float().mean())
        return dict(batch, label=label)
