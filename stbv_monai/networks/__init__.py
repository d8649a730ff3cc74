"""STCN-style space-time memory network: stateless modules, memory ops, wrappers, weight loading."""

from __future__ import annotations

from stbv_monai.networks.checkpoint import LoadReport, load_pretrained, read_state_dict
from stbv_monai.networks.export import PropagationNet
from stbv_monai.networks.memory_ops import (
    affinity,
    object_probability,
    read_memory,
    readout,
    similarity,
    soft_aggregate,
    top_k_readout,
)
from stbv_monai.networks.preprocess import normalize_frames, pad_to_multiple, unpad
from stbv_monai.networks.stcn import PRESETS, STCN, KeyFeatures, build_network
from stbv_monai.networks.training import ClipTrainingWrapper, training_network

__all__ = [
    "STCN",
    "KeyFeatures",
    "PRESETS",
    "build_network",
    "ClipTrainingWrapper",
    "training_network",
    "PropagationNet",
    "LoadReport",
    "load_pretrained",
    "read_state_dict",
    "similarity",
    "affinity",
    "readout",
    "top_k_readout",
    "read_memory",
    "soft_aggregate",
    "object_probability",
    "normalize_frames",
    "pad_to_multiple",
    "unpad",
]
