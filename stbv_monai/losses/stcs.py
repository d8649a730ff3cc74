"""Space-time consistency supervision (STCS, paper sec. 3.2, eq. 6-8).

For consecutive frames ``t, t+1`` and an anchor ``tau``: each position ``i`` of ``K_t`` finds
its best match ``j* = argmax_j A^{t,tau}(i, j)`` on the anchor (eq. 6-7; no gradient through the
argmax), and ``K_{t+1}(i)`` is trained to pick the same anchor position among all of them:

    L = mean_i  -log softmax_j( s(K_{t+1}(i), K_tau(j)) / temperature )[j*(i)]

The paper's eq. 8 writes ``-log sum_i p_i``. Taken literally this is degenerate: a sum of
``h*w`` probabilities is not a likelihood (it lies in (0, h*w], so the loss goes down to
``-log(h*w)``, not 0, and its scale depends on the feature-map size); one well-matched
position already brings it to <= 0; and its gradient reaches position ``i`` with weight
``p_i / sum_i' p_i'``, so the badly matched positions, the ones that need supervision, get
almost none. We use the mean over ``i`` of ``-log p_i``: the standard InfoNCE /
cross-entropy form of the paper's description ("``K_{t+1}(i)`` and ``K_tau(j != j*)`` as
negative pairs"), one contrastive term per position, lower bound 0.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["SIMILARITIES", "key_similarity", "STCSLoss"]

SIMILARITIES = ("dot", "l2")


def key_similarity(query: torch.Tensor, memory: torch.Tensor, similarity: str = "dot",
                   temperature: float = 1.0) -> torch.Tensor:
    """Pairwise similarity of every query position to every memory position.

    Args:
        query: ``(B, C, Q)`` keys.
        memory: ``(B, C, M)`` keys.
        similarity: ``"dot"`` (paper eq. 6, ``<q, m>``) or ``"l2"`` (STCN's memory read:
            ``-||q - m||^2``; the ``||q||^2`` term is dropped as it cancels in a softmax over ``m``).
        temperature: divides the similarity (STCN's L2 affinity uses ``sqrt(C)``).

    Returns:
        ``(B, Q, M)`` logits of a softmax over memory positions.
    """
    sim = torch.einsum("bcq,bcm->bqm", query, memory)
    if similarity == "l2":
        sim = 2.0 * sim - memory.pow(2).sum(dim=1).unsqueeze(1)
    elif similarity != "dot":
        raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
    return sim / temperature


class STCSLoss(nn.Module):
    """Space-time consistency loss on the key projections of frames ``t``, ``t+1`` and ``tau``.

    Args:
        weight: multiplies the loss (its weight in the total loss).
        similarity: ``"dot"`` (default, the paper's eq. 6) or ``"l2"`` (STCN's affinity).
        temperature: softmax temperature of the ``t+1`` -> ``tau`` affinity (1: the paper).

    Forward: ``k_t``, ``k_t1``, ``k_tau`` each ``(B, C, h, w)`` (``k_tau`` may have its own
    ``h, w``); returns the weighted scalar loss. ``k_t`` only chooses the targets and gets no
    gradient; ``k_t1`` and ``k_tau`` do. Computed in float32.
    """

    def __init__(self, weight: float = 1.0, similarity: str = "dot", temperature: float = 1.0) -> None:
        super().__init__()
        if similarity not in SIMILARITIES:
            raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.weight, self.similarity, self.temperature = weight, similarity, temperature

    @torch.no_grad()
    def targets(self, k_t: torch.Tensor, k_tau: torch.Tensor) -> torch.Tensor:
        """``j*`` ``(B, h*w)``: for each position of ``K_t`` the best-matching anchor position (eq. 7)."""
        sim = key_similarity(k_t.detach().float().flatten(2), k_tau.detach().float().flatten(2), self.similarity)
        return sim.argmax(dim=2)

    def forward(self, k_t: torch.Tensor, k_t1: torch.Tensor, k_tau: torch.Tensor) -> torch.Tensor:
        if k_t.shape != k_t1.shape or k_t.dim() != 4 or k_tau.dim() != 4 or k_tau.shape[:2] != k_t.shape[:2]:
            raise ValueError(f"expected k_t, k_t1 (B, C, h, w) alike and k_tau (B, C, h', w'), got "
                             f"{tuple(k_t.shape)}, {tuple(k_t1.shape)}, {tuple(k_tau.shape)}")
        target = self.targets(k_t, k_tau)
        logits = key_similarity(k_t1.float().flatten(2), k_tau.float().flatten(2), self.similarity, self.temperature)
        return self.weight * F.cross_entropy(logits.transpose(1, 2), target)
