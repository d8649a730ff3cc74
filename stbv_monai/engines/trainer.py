"""The trainer of every stage: a memory network learning from clips, as a MONAI ``SupervisedTrainer``.

MONAI's trainer computes ``loss(network(image), label)`` on independent samples; a memory
network segments frames ``1..N-1`` of a clip from frame 0's mask, the loss needs per-frame label
sources (eq. 4: ground truth vs pseudo-labels) and the iteration (bootstrapped CE), and STCS
(eq. 6–8) needs the keys of an extra frame triplet. So this subclass overrides ``_iteration``
only, keeping MONAI's events, handlers, checkpointing and ``state.output["loss"]``. The teacher,
the student and the baselines differ in data (clip sampling, augmentation, pseudo-labels) and
loss weights, all set in config, not in flags here.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents
from monai.utils import CommonKeys as Keys

from stbv_monai.handlers.stop_on_signal import StopOnSignal
from stbv_monai.losses import SegmentationLoss, STCSLoss

__all__ = ["ClipTrainer"]

BATCH_TENSORS = ("image", "label", "source", "loss_mask", "stcs_image")


class ClipTrainer(SupervisedTrainer):
    """Train a :class:`~stbv_monai.networks.ClipTrainingWrapper` on batches of clips.

    Batches (from :func:`stbv_monai.transforms.clip_training_transforms`, collated) hold
    ``image``/``label``/``loss_mask`` ``(B, N, H, W)``, ``source`` ``(B, N)`` and, with STCS,
    ``stcs_image`` ``(B, 3, H, W)`` ordered ``[t, t+1, tau]``.

    Args:
        seg_loss: the eq. 4 loss (ground-truth and pseudo parts, bootstrapped).
        stcs_loss: the space-time consistency loss, or ``None`` to train without it.
        batch_transform: applied to the batch on the device before the forward pass
            (e.g. :class:`~stbv_monai.transforms.RandPseudoCutMixd`).
        amp: bfloat16 autocast on the trainer's device (for GPUs; slow on CPUs without bf16 units).
        kwargs: everything else goes to :class:`monai.engines.SupervisedTrainer`.
    """

    def __init__(self, *, seg_loss: SegmentationLoss, stcs_loss: STCSLoss | None = None,
                 batch_transform: Callable[[dict], dict] | None = None, amp: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("decollate", False)
        super().__init__(loss_function=seg_loss, amp=False, **kwargs)
        self.stcs_loss = stcs_loss
        self.batch_transform = batch_transform
        self.use_amp = amp
        StopOnSignal().attach(self)  # SIGTERM/SIGINT: stop at the end of the iteration, checkpointed

    def _iteration(self, engine: ClipTrainer, batchdata: Mapping[str, Any]) -> dict[str, Any]:  # type: ignore[override]
        batch = {k: v.to(engine.state.device, non_blocking=engine.non_blocking) for k, v in batchdata.items()
                 if k in BATCH_TENSORS and isinstance(v, torch.Tensor)}
        if self.batch_transform is not None:
            batch = self.batch_transform(batch)
        engine.network.train()
        engine.optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
        with torch.autocast(engine.state.device.type, dtype=torch.bfloat16, enabled=self.use_amp):
            total, parts = self._forward_loss(engine, batch)
        total.backward()
        engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
        engine.optimizer.step()
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output

    def _forward_loss(self, engine: ClipTrainer, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        frames = batch["image"].unsqueeze(2)
        extra = batch["stcs_image"].unsqueeze(2) if self.stcs_loss is not None and "stcs_image" in batch else None
        out = engine.network(frames, batch["label"][:, :1], extra_frames=extra)
        engine.state.output = {Keys.IMAGE: batch["image"], Keys.LABEL: batch["label"], Keys.PRED: out["probs"]}
        engine.fire_event(IterationEvents.FORWARD_COMPLETED)
        seg, parts = engine.loss_function(out["logits"][:, :, 0].float(), batch["label"][:, 1:],
                                          batch["source"][:, 1:], batch["loss_mask"][:, 1:],
                                          iteration=engine.state.iteration)
        total = seg
        parts["loss_seg"] = seg.detach()
        if extra is not None:
            keys = out["extra_keys"]
            stcs = self.stcs_loss(keys[:, 0], keys[:, 1], keys[:, 2])
            total = total + stcs
            parts["loss_stcs"] = stcs.detach()
        engine.state.output[Keys.LOSS] = total
        engine.state.output.update({k: float(v) for k, v in parts.items()})
        engine.fire_event(IterationEvents.LOSS_COMPLETED)
        return total, parts
