"""Training wrapper: one ``forward`` runs a whole clip STCN-style, so DDP sees one call."""

from __future__ import annotations

import torch
import torch.nn as nn

from stbv_monai.errors import InputError
from stbv_monai.networks.memory_ops import soft_aggregate
from stbv_monai.networks.preprocess import STRIDE, normalize_frames
from stbv_monai.networks.stcn import STCN, build_network

__all__ = ["ClipTrainingWrapper", "training_network", "unwrap"]


class ClipTrainingWrapper(nn.Module):
    """Segment frames ``1..T-1`` of a clip from the mask of frame 0, memorising each prediction.

    Frame 0 and its mask form the memory; frame 1 is read out and decoded; its predicted
    probability (with gradient, as in STCN) is encoded and added to the memory; frame 2 is
    read from frames 0 and 1; and so on (STCN trains on ``T = 3``). Readout is the dense
    softmax unless ``top_k`` is given.

    Input frames are in [0, 1]: ``(B, T, 1, H, W)`` grayscale is repeated to three channels,
    then (like ``(B, T, 3, H, W)`` RGB) normalised with the ImageNet mean and std.

    Args:
        network: the stateless :class:`~stbv_monai.networks.stcn.STCN` (``self.network``).
        top_k: ``None`` (STCN training) or top-k readout.
    """

    def __init__(self, network: STCN, top_k: int | None = None) -> None:
        super().__init__()
        self.network = network
        self.top_k = top_k

    def forward(self, frames: torch.Tensor, first_mask: torch.Tensor,
                extra_frames: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Run one clip (and encode the keys of ``extra_frames``, e.g. the STCS triplet).

        Args:
            frames: ``(B, T, C, H, W)``, ``C`` 1 or 3, values in [0, 1], ``T >= 2``, ``H`` and ``W``
                multiples of 16.
            first_mask: ``(B, 1, H, W)`` (or ``(B, H, W)``) mask of frame 0 in [0, 1].
            extra_frames: ``(B, E, C, H', W')`` frames whose keys are wanted too; encoded in
                the same call so that DDP sees one forward per iteration.

        Returns:
            ``logits``: ``(B, T-1, 1, H, W)`` aggregated object logits of frames ``1..T-1``
            (``sigmoid`` gives STCN's probability; BCE on them equals STCN's two-class CE
            after soft aggregation); ``probs``: their sigmoid; ``keys``: ``(B, T, Ck, H/16, W/16)``
            keys of all frames; ``extra_keys``: ``(B, E, Ck, H'/16, W'/16)`` when ``extra_frames``
            is given (for the space-time consistency loss).
        """
        b, t, _, h, w = _check_clip(frames, first_mask)
        x = normalize_frames(frames).flatten(0, 1)
        feats = self.network.encode_key(x)
        key, f16, f8, f4 = (f.view(b, t, *f.shape[1:]) for f in (feats.key, feats.f16, feats.f8, feats.f4))
        images = x.view(b, t, *x.shape[1:])
        mask = first_mask.reshape(b, 1, h, w).to(x.dtype)
        values = [self.network.encode_value(images[:, 0], f16[:, 0], mask)]
        logits, probs = [], []
        for ti in range(1, t):
            memory_key = key[:, :ti].transpose(1, 2)
            memory_value = torch.stack(values, dim=2)
            readout = self.network.read_memory(memory_key, memory_value, key[:, ti], self.top_k)
            out = soft_aggregate(self.network.segment(readout, f16[:, ti], f8[:, ti], f4[:, ti]))
            prob = torch.sigmoid(out)
            logits.append(out)
            probs.append(prob)
            if ti < t - 1:
                values.append(self.network.encode_value(images[:, ti], f16[:, ti], prob))
        out = {"logits": torch.stack(logits, dim=1), "probs": torch.stack(probs, dim=1), "keys": key}
        if extra_frames is not None:
            extra = self.network.encode_key(normalize_frames(extra_frames).flatten(0, 1)).key
            out["extra_keys"] = extra.view(b, extra_frames.shape[1], *extra.shape[1:])
        return out


def _check_clip(frames: torch.Tensor, first_mask: torch.Tensor) -> tuple[int, int, int, int, int]:
    if frames.dim() != 5 or frames.shape[2] not in (1, 3):
        raise InputError("frames", f"expected (B, T, 1|3, H, W), got shape {tuple(frames.shape)}")
    b, t, c, h, w = (int(s) for s in frames.shape)
    if t < 2:
        raise InputError("frames", f"a training clip needs at least 2 frames, got {t}")
    if h % STRIDE or w % STRIDE:
        raise InputError("frames", f"H and W must be multiples of {STRIDE} for training, got {h}x{w}")
    if first_mask.numel() != b * h * w:
        raise InputError("first_mask", f"expected (B, 1, H, W) = ({b}, 1, {h}, {w}), got {tuple(first_mask.shape)}")
    return b, t, c, h, w


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The bare STCN inside DDP and training wrappers."""
    while isinstance(getattr(module, "module", None), torch.nn.Module) or isinstance(
        getattr(module, "network", None), torch.nn.Module
    ):
        module = module.module if isinstance(getattr(module, "module", None), torch.nn.Module) else module.network
    return module


def training_network(name: str, training_size: list[int] | tuple[int, int], device: torch.device | str = "cpu",
                     **kwargs: object) -> ClipTrainingWrapper:
    """A fresh STCN of preset ``name`` (see :func:`build_network`) for clip training on ``device``: every stage's network.

    Built on its device at once, so handlers that copy it (the EMA teacher) copy it there.
    """
    return ClipTrainingWrapper(build_network(name, training_size, **kwargs)).to(device)
