"""The stateless STCN-style space-time memory network and its named sizes.

The network keeps nothing between calls: the caller (the training wrapper or the inference
core) owns the memory and passes keys and values in. Parameter names follow STCN's
checkpoints (``key_encoder.res2``, ``value_encoder.fuser``, ``key_proj.key_proj``, ``key_comp``,
``decoder.up_16_8`` ...), so official weights load by name (see ``load_pretrained``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, Optional

import torch
import torch.nn as nn

from stbv_monai.networks import memory_ops
from stbv_monai.networks.blocks import KeyProjection
from stbv_monai.networks.decoder import Decoder
from stbv_monai.networks.encoders import KeyEncoder, ValueEncoder

__all__ = ["STCN", "KeyFeatures", "PRESETS", "TRAINING_SIZE_KEY", "build_network"]

#: State-dict entry (an int64 ``(2,)`` buffer) holding the ``(H, W)`` the weights were trained at.
TRAINING_SIZE_KEY = "training_size"


# Functional NamedTuple syntax: real (not string) field types, which TorchScript needs.
KeyFeatures = NamedTuple(  # noqa: UP014
    "KeyFeatures",
    [
        ("key", torch.Tensor),
        ("shrinkage", Optional[torch.Tensor]),  # noqa: UP045
        ("f16", torch.Tensor),
        ("f8", torch.Tensor),
        ("f4", torch.Tensor),
    ],
)
KeyFeatures.__doc__ = """What :meth:`STCN.encode_key` returns for ``N`` images of size ``H x W``.

Attributes:
    key: ``(N, Ck, H/16, W/16)`` keys (query or memory).
    shrinkage: always ``None`` (STCN has no shrinkage term; kept for an XMem-style signature).
    f16: ``(N, C16, H/16, W/16)`` key-encoder features (value encoder and decoder input).
    f8: ``(N, C8, H/8, W/8)`` skip features.
    f4: ``(N, C4, H/4, W/4)`` skip features.
"""


PRESETS: dict[str, dict[str, Any]] = {
    # STCN as published: ResNet-50 keys, ResNet-18 values, 64-d keys, 512-d values.
    "stcn": {},
    # Small enough to train on two CPU cores at 128x128 in minutes.
    "stcn_small": {
        "key_backbone": "resnet18",
        "key_width": 32,
        "value_width": 16,
        "key_dim": 32,
        "value_dim": 128,
        "decoder_dims": (128, 64, 32),
        "cbam_reduction": 8,
    },
}


class STCN(nn.Module):
    """Space-time correspondence network (Cheng et al., NeurIPS 2021), single object.

    ``STCN()`` is the paper-size model (about 54 M parameters). Use explicit methods; there
    is no ``forward``: :class:`~stbv_monai.networks.training.ClipTrainingWrapper` runs a
    training clip, :func:`stbv_monai.inference.propagate` a whole video, and
    :class:`~stbv_monai.networks.export.PropagationNet` is the single-tensor export form.

    Args:
        key_backbone: ``"resnet50"`` (paper), ``"resnext50"`` (ResNeXt-50 32x4d) or ``"resnet18"``.
        key_width: stem width of the key encoder (64: ImageNet size).
        value_width: stem width of the value encoder's ResNet-18 (64 in STCN).
        key_dim: key channels ``Ck`` (64 in STCN).
        value_dim: value channels ``Cv`` (512 in STCN); ``key_comp`` maps query features to it.
        decoder_dims: channels after ``compress``, ``up_16_8``, ``up_8_4`` (512, 256, 256).
        mask_channels: 2 (mask + other-objects mask, STCN's 5-channel value input) or 1.
        cbam_reduction: CBAM reduction ratio in the value fusion block (16 in STCN).
        training_size: the frame size ``(H, W)`` the weights are trained at; ``None``: unknown.
            It is a buffer, so it travels inside every saved state dict, and
            :func:`~stbv_monai.inference.propagate` resizes videos to it (see :meth:`trained_at`).
    """

    def __init__(
        self,
        key_backbone: str = "resnet50",
        key_width: int = 64,
        value_width: int = 64,
        key_dim: int = 64,
        value_dim: int = 512,
        decoder_dims: Sequence[int] = (512, 256, 256),
        mask_channels: int = 2,
        cbam_reduction: int = 16,
        training_size: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.key_encoder = KeyEncoder(key_backbone, key_width)
        c16, c8, c4 = (self.key_encoder.channels[k] for k in ("f16", "f8", "f4"))
        self.value_encoder = ValueEncoder(c16, value_dim, value_width, mask_channels, cbam_reduction)
        self.key_proj = KeyProjection(c16, key_dim)
        self.key_comp = nn.Conv2d(c16, value_dim, kernel_size=3, padding=1)
        self.decoder = Decoder(2 * value_dim, c8, c4, decoder_dims)
        self.key_dim = key_dim
        self.value_dim = value_dim
        size = [0, 0] if training_size is None else [int(v) for v in training_size]
        self.register_buffer(TRAINING_SIZE_KEY, torch.tensor(size, dtype=torch.int64))

    def trained_at(self) -> tuple[int, int] | None:
        """The ``(H, W)`` the weights were trained at, or ``None`` when not recorded (official checkpoints)."""
        size = tuple(int(v) for v in getattr(self, TRAINING_SIZE_KEY).tolist())
        return None if min(size) <= 0 else (size[0], size[1])

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> STCN:
        """Build a named size (``"stcn"``, ``"stcn_small"``), optionally overriding arguments."""
        if name not in PRESETS:
            raise ValueError(f"unknown network preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    def encode_key(self, frames: torch.Tensor) -> KeyFeatures:
        """Encode normalised frames (query or memory) into keys and decoder features.

        Args:
            frames: ``(N, 3, H, W)`` ImageNet-normalised, ``H`` and ``W`` multiples of 16.

        Returns:
            :class:`KeyFeatures` ``(key, None, f16, f8, f4)``.
        """
        f16, f8, f4 = self.key_encoder(frames)
        return KeyFeatures(self.key_proj(f16), None, f16, f8, f4)

    def encode_value(
        self, frames: torch.Tensor, f16: torch.Tensor, mask: torch.Tensor, other_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Encode frames and their object masks into memory values.

        Args:
            frames: ``(N, 3, H, W)`` normalised frames.
            f16: ``(N, C16, H/16, W/16)`` from :meth:`encode_key` of the same frames.
            mask: ``(N, 1, H, W)`` object probability in [0, 1].
            other_mask: ``(N, 1, H, W)`` other objects' probability, zeros when ``None``.

        Returns:
            ``(N, Cv, H/16, W/16)``.
        """
        return self.value_encoder(frames, f16, mask, other_mask)

    def read_memory(
        self,
        memory_key: torch.Tensor,
        memory_value: torch.Tensor,
        query_key: torch.Tensor,
        top_k: int | None = None,
    ) -> torch.Tensor:
        """Read the memory for a query frame (L2 affinity, softmax or top-k softmax).

        Args:
            memory_key: ``(B, Ck, N)`` or ``(B, Ck, T, h, w)``.
            memory_value: ``(B, Cv, N)`` or ``(B, Cv, T, h, w)``.
            query_key: ``(B, Ck, h, w)``.
            top_k: ``None``: full softmax (training); integer: top-k (inference, STCN uses 20).

        Returns:
            ``(B, Cv, h, w)`` readout.
        """
        b, _, h, w = query_key.shape
        out = memory_ops.read_memory(
            memory_key.flatten(start_dim=2), memory_value.flatten(start_dim=2), query_key.flatten(start_dim=2), top_k
        )
        return out.view(b, -1, h, w)

    def segment(self, readout: torch.Tensor, f16: torch.Tensor, f8: torch.Tensor, f4: torch.Tensor) -> torch.Tensor:
        """Decode the memory readout and the query's features into raw object logits.

        Args:
            readout: ``(B, Cv, h, w)`` from :meth:`read_memory`.
            f16, f8, f4: the query's :class:`KeyFeatures` features.

        Returns:
            ``(B, 1, 16h, 16w)`` raw logits; STCN's probability is
            :func:`~stbv_monai.networks.memory_ops.object_probability` of them.
        """
        x16 = torch.cat([readout, self.key_comp(f16)], dim=1)
        return self.decoder(x16, f8, f4)

    @torch.jit.unused
    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        """Not used: call the explicit methods, or wrap the network (training / export wrappers)."""
        raise NotImplementedError(
            "STCN has no forward(); use encode_key/encode_value/read_memory/segment, "
            "ClipTrainingWrapper for training or PropagationNet for a single-tensor forward"
        )


def build_network(name: str = "stcn", training_size: Sequence[int] | None = None, **kwargs: Any) -> STCN:
    """Factory for bundle configs, e.g. ``build_network("stcn_small", training_size=[128, 128])`` or
    ``build_network("stcn", key_backbone="resnext50")``; ``kwargs`` override the preset's arguments.

    ``training_size`` is the resolution the network is (or was) trained at; a checkpoint that
    records its own replaces it when loaded.
    """
    return STCN.from_preset(name, training_size=training_size, **kwargs)
