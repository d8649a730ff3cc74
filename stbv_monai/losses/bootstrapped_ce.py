"""STCN's bootstrapped cross-entropy, with a per-pixel weight (ignore) map.

STCN (``model/losses.py``) trains with plain cross-entropy until iteration ``start_warm``
(20K), then keeps only the hardest ``top_p`` fraction of pixels, ``top_p`` falling linearly
from 1 to ``min_p`` (0.15) at ``end_warm`` (70K). Here every pixel also carries a weight:
weight-0 pixels (unlabelled frames, CutOut holes, pixels the teacher was unsure of) are
removed before ranking, so they never contribute and their gradient is exactly 0.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["bootstrap_top_p", "bootstrapped_mean", "BootstrappedBCE"]


def bootstrap_top_p(iteration: int, start_warm: int = 20_000, end_warm: int = 70_000, min_p: float = 0.15) -> float:
    """Fraction of the hardest pixels kept at ``iteration`` (1 until ``start_warm``, ``min_p`` after ``end_warm``)."""
    if iteration < start_warm:
        return 1.0
    if iteration >= end_warm or end_warm <= start_warm:
        return float(min_p)
    return float(min_p + (1.0 - min_p) * (end_warm - iteration) / (end_warm - start_warm))


def bootstrapped_mean(raw: torch.Tensor, weight: torch.Tensor | None, top_p: float) -> torch.Tensor:
    """Mean of the hardest ``top_p`` fraction of the weighted per-pixel losses, over weight > 0 pixels.

    Args:
        raw: per-pixel losses, any shape.
        weight: same shape, >= 0 (``None``: all ones). Pixels are ranked by ``weight * raw``.
        top_p: fraction kept, in (0, 1]; at least one pixel is kept.

    Returns:
        Scalar ``sum(w * l) / k`` over the ``k`` kept pixels; a graph-connected 0 when no
        pixel has weight > 0.
    """
    if weight is None:
        values = raw.reshape(-1)
    else:
        weight = weight.to(raw.dtype).expand_as(raw)
        valid = weight > 0
        values = raw[valid] * weight[valid]
    if values.numel() == 0:
        return raw.sum() * 0.0
    if top_p < 1.0:
        k = max(1, int(values.numel() * top_p))
        values, _ = torch.topk(values, k, sorted=False)
    return values.mean()


class BootstrappedBCE(nn.Module):
    """Bootstrapped binary cross-entropy on single-object logits (our choice for one lesion).

    For one object STCN's two-class CE on soft-aggregated ``[bg, obj]`` logits equals binary
    CE with logits on the aggregated object logit (``softmax([-l, l])[1] = sigmoid(2l)``, and
    ``soft_aggregate`` already returns that logit), so one channel suffices.

    Args:
        start_warm: iteration where bootstrapping starts (STCN: 20K).
        end_warm: iteration where ``top_p`` reaches ``min_p`` (STCN: 70K).
        min_p: final fraction of hardest pixels (STCN: 0.15).

    Forward: ``logits`` ``(B, N, H, W)`` (any shape), ``target`` same shape in {0, 1} (soft
    targets work too), ``weight`` same shape or ``None``, keyword ``iteration``; returns
    ``(loss, top_p)``.
    """

    def __init__(self, start_warm: int = 20_000, end_warm: int = 70_000, min_p: float = 0.15) -> None:
        super().__init__()
        if not 0 < min_p <= 1:
            raise ValueError(f"min_p must be in (0, 1], got {min_p}")
        self.start_warm, self.end_warm, self.min_p = start_warm, end_warm, min_p

    def top_p(self, iteration: int) -> float:
        """Fraction of pixels kept at ``iteration``."""
        return bootstrap_top_p(iteration, self.start_warm, self.end_warm, self.min_p)

    def forward(self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
                *, iteration: int) -> tuple[torch.Tensor, float]:
        if logits.shape != target.shape:
            raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ in shape")
        raw = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")
        p = self.top_p(iteration)
        return bootstrapped_mean(raw, weight, p), p
