"""Single-tensor form of the network for MONAI's ``verify_net_in_out`` / ``ckpt_export``."""

from __future__ import annotations

import torch
import torch.nn as nn

from stbv_monai.networks.memory_ops import soft_aggregate
from stbv_monai.networks.preprocess import normalize_frames, pad_to_multiple, unpad
from stbv_monai.networks.stcn import STCN

__all__ = ["PropagationNet"]


class PropagationNet(nn.Module):
    """One propagation step as ``forward(x)``: segment a query frame from one reference frame.

    Input ``x`` is ``(B, 3, H, W)`` with channels ``[reference frame, reference mask, query frame]``,
    frames grayscale in [0, 1], mask in {0, 1} (or a probability). Output is ``(B, 1, H, W)``
    aggregated lesion logits of the query frame: ``sigmoid`` of them is the probability that
    :func:`stbv_monai.inference.propagate` gives a frame whose memory is that one reference.
    Any ``H, W`` works (padded to a multiple of 16 inside and cropped back). The module is
    ``torch.jit.trace``-able; its parameters are the wrapped network's (``network.``-prefixed).

    Args:
        network: the :class:`~stbv_monai.networks.stcn.STCN` to wrap.
        top_k: readout top-k (``None``: full softmax, as in training).
    """

    def __init__(self, network: STCN, top_k: int | None = None) -> None:
        super().__init__()
        self.network = network
        self.top_k = top_k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` = [reference frame, reference mask, query frame] -> ``(B, 1, H, W)`` logits."""
        b = x.shape[0]
        frames = normalize_frames(torch.cat([x[:, 0:1], x[:, 2:3]], dim=0))  # (2B, 3, H, W)
        frames, pad = pad_to_multiple(frames)
        mask, _ = pad_to_multiple(x[:, 1:2])
        feats = self.network.encode_key(frames)
        value = self.network.encode_value(frames[:b], feats.f16[:b], mask)
        readout = self.network.read_memory(feats.key[:b], value, feats.key[b:], self.top_k)
        logits = self.network.segment(readout, feats.f16[b:], feats.f8[b:], feats.f4[b:])
        return unpad(soft_aggregate(logits), pad)
