"""Pure memory operations shared by training and inference: affinity, readout, soft aggregation.

Shapes: memory keys ``mk (B, Ck, N)`` and values ``mv (B, Cv, N)`` with ``N = T * h * w``
memory positions; query keys ``qk (B, Ck, M)`` with ``M = h * w`` query positions.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "similarity",
    "affinity",
    "readout",
    "top_k_readout",
    "read_memory",
    "soft_aggregate",
    "object_probability",
    "AGGREGATE_EPS",
]

AGGREGATE_EPS = 1e-7


def similarity(memory_key: torch.Tensor, query_key: torch.Tensor) -> torch.Tensor:
    """Negative squared L2 distance up to a per-query constant, scaled: ``(2 mk^T qk - |mk|^2) / sqrt(Ck)``.

    The ``-|qk|^2`` term of the full distance is constant over memory positions and cancels
    in the softmax over them, so it is left out.

    Args:
        memory_key: ``(B, Ck, N)``.
        query_key: ``(B, Ck, M)``.

    Returns:
        ``(B, N, M)`` similarity logits.
    """
    key_dim = memory_key.shape[1]
    mk_sq = memory_key.pow(2).sum(dim=1).unsqueeze(2)
    cross = memory_key.transpose(1, 2) @ query_key
    return (2 * cross - mk_sq) / math.sqrt(key_dim)


def affinity(memory_key: torch.Tensor, query_key: torch.Tensor, top_k: int | None = None) -> torch.Tensor:
    """Dense affinity: softmax of :func:`similarity` over memory positions.

    Args:
        memory_key: ``(B, Ck, N)``.
        query_key: ``(B, Ck, M)``.
        top_k: keep only the ``top_k`` most similar memory positions per query position
            (softmax over those, zero elsewhere); ``None`` or ``top_k >= N``: full softmax.

    Returns:
        ``(B, N, M)``; every column sums to 1.
    """
    sim = similarity(memory_key, query_key)
    if top_k is None or top_k >= sim.shape[1]:
        return F.softmax(sim, dim=1)
    values, indices = sim.topk(top_k, dim=1)
    return torch.zeros_like(sim).scatter_(1, indices, F.softmax(values, dim=1))


def readout(affinity_: torch.Tensor, memory_value: torch.Tensor) -> torch.Tensor:
    """Affinity-weighted sum of memory values.

    Args:
        affinity_: ``(B, N, M)`` from :func:`affinity`.
        memory_value: ``(B, Cv, N)``.

    Returns:
        ``(B, Cv, M)``.
    """
    return torch.bmm(memory_value, affinity_.to(memory_value.dtype))


def top_k_readout(
    memory_key: torch.Tensor, memory_value: torch.Tensor, query_key: torch.Tensor, top_k: int
) -> torch.Tensor:
    """Top-k readout without the dense ``(B, N, M)`` product: gathers the ``k`` selected values.

    Equal to ``readout(affinity(mk, qk, top_k), mv)``; costs ``O(Cv k M)`` instead of ``O(Cv N M)``.

    Args:
        memory_key: ``(B, Ck, N)``.
        memory_value: ``(B, Cv, N)``.
        query_key: ``(B, Ck, M)``.
        top_k: memory positions kept per query position (clipped to ``N``).

    Returns:
        ``(B, Cv, M)``.
    """
    sim = similarity(memory_key, query_key)
    batch, channels, _ = memory_value.shape
    k = min(int(top_k), sim.shape[1])
    values, indices = sim.topk(k, dim=1)
    weights = F.softmax(values, dim=1).to(memory_value.dtype)
    m = indices.shape[2]
    index = indices.reshape(batch, 1, k * m).expand(batch, channels, k * m)
    gathered = torch.gather(memory_value, 2, index).view(batch, channels, k, m)
    return (gathered * weights.unsqueeze(1)).sum(dim=2)


def read_memory(
    memory_key: torch.Tensor, memory_value: torch.Tensor, query_key: torch.Tensor, top_k: int | None = None
) -> torch.Tensor:
    """Read the memory at the query positions, dense or top-k.

    Args:
        memory_key: ``(B, Ck, N)``.
        memory_value: ``(B, Cv, N)``.
        query_key: ``(B, Ck, M)``.
        top_k: ``None`` for the full softmax (training), an integer for top-k (inference).

    Returns:
        ``(B, Cv, M)``.
    """
    if top_k is None or top_k >= memory_key.shape[2]:
        return readout(affinity(memory_key, query_key), memory_value)
    return top_k_readout(memory_key, memory_value, query_key, top_k)


def soft_aggregate(logits: torch.Tensor, eps: float = AGGREGATE_EPS) -> torch.Tensor:
    """STCN's soft aggregation with background, for one object, as logits.

    STCN turns the decoder's probability ``p = sigmoid(x)`` and the background ``1 - p`` into
    clamped logits ``log(q / (1 - q))``, ``q`` clamped to ``[1e-7, 1 - 1e-7]``, and takes the
    softmax over {background, object}. For one object that softmax is ``sigmoid(2 x')`` with
    ``x' = clamp(x, -L, L)``, ``L = log((1 - 1e-7) / 1e-7)``; this returns ``2 x'``, so that
    ``sigmoid`` of it is STCN's object probability and a binary cross-entropy on it equals
    STCN's two-class cross-entropy.

    Args:
        logits: raw decoder logits, any shape.
        eps: STCN's probability clamp.

    Returns:
        aggregated logits, same shape.
    """
    limit = math.log((1.0 - eps) / eps)
    return 2.0 * logits.clamp(-limit, limit)


def object_probability(logits: torch.Tensor) -> torch.Tensor:
    """Object probability after soft aggregation: ``sigmoid(soft_aggregate(logits))``."""
    return torch.sigmoid(soft_aggregate(logits))
