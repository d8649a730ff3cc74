"""The segmentation loss of the re-training stage (paper eq. 4): ground-truth and pseudo parts."""

from __future__ import annotations

import torch
import torch.nn as nn

from stbv_monai.losses.bootstrapped_ce import BootstrappedBCE
from stbv_monai.constants import SOURCE_GT, SOURCE_PSEUDO

__all__ = ["SegmentationLoss"]


class SegmentationLoss(nn.Module):
    """``gt_weight * H(Y^l, A_w(I^l)) + pseudo_weight * H(Y^u, A_s(A_w(I^u)))`` (eq. 4).

    ``H`` is :class:`BootstrappedBCE`; the two parts are computed (and bootstrapped) separately
    over the pixels of the frames with ``source == 1`` and ``source == 2`` respectively, times
    ``loss_mask``. Frames with ``source == 0`` never contribute. A part with no pixels is 0.
    Pass only the frames the network predicts (STCN: frames ``1..N-1`` of the clip).

    Args:
        gt_weight: weight of the ground-truth part.
        pseudo_weight: weight of the pseudo-label part.
        start_warm, end_warm, min_p: bootstrapping schedule (see :class:`BootstrappedBCE`).

    Forward: ``logits`` ``(B, N, H, W)``, ``target`` ``(B, N, H, W)``, ``source`` ``(B, N)``,
    ``loss_mask`` ``(B, N, H, W)`` or ``None``, keyword ``iteration``. Returns ``(total,
    parts)`` with ``parts`` holding detached ``loss_gt``, ``loss_pseudo`` and the float ``top_p``.
    """

    def __init__(self, gt_weight: float = 1.0, pseudo_weight: float = 1.0, start_warm: int = 20_000,
                 end_warm: int = 70_000, min_p: float = 0.15) -> None:
        super().__init__()
        self.gt_weight = gt_weight
        self.pseudo_weight = pseudo_weight
        self.ce = BootstrappedBCE(start_warm, end_warm, min_p)

    def forward(self, logits: torch.Tensor, target: torch.Tensor, source: torch.Tensor,
                loss_mask: torch.Tensor | None = None, *, iteration: int) -> tuple[torch.Tensor, dict[str, object]]:
        if source.shape != logits.shape[:2]:
            raise ValueError(f"source {tuple(source.shape)} must be logits' (B, N) {tuple(logits.shape[:2])}")
        mask = torch.ones_like(logits, dtype=torch.float32) if loss_mask is None else loss_mask.float()
        frame_shape = source.shape + (1,) * (logits.dim() - 2)
        gt_mask = mask * (source == SOURCE_GT).reshape(frame_shape).to(mask.dtype)
        pseudo_mask = mask * (source == SOURCE_PSEUDO).reshape(frame_shape).to(mask.dtype)
        loss_gt, top_p = self.ce(logits, target, gt_mask, iteration=iteration)
        loss_pseudo, _ = self.ce(logits, target, pseudo_mask, iteration=iteration)
        total = self.gt_weight * loss_gt + self.pseudo_weight * loss_pseudo
        return total, {"loss_gt": loss_gt.detach(), "loss_pseudo": loss_pseudo.detach(), "top_p": top_p}
