"""Deterministic random weights from a list of (name, shape), independent of module order.

Used to compare implementations without shipping weights: two codebases that agree on
parameter names and shapes get identical tensors from the same seed, whatever order their
modules are built in (``scripts/make_stcn_fixture.py`` and ``tests/test_inference.py``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch

__all__ = ["seeded_state_dict"]


def seeded_state_dict(
    shapes: Iterable[tuple[str, Sequence[int]]], seed: int, gain: float = 1.0
) -> dict[str, torch.Tensor]:
    """Random float32 tensors for the given names and shapes, drawn in sorted-name order.

    One CPU ``torch.Generator`` seeded with ``seed`` draws, for each name in sorted order:
    ``num_batches_tracked``: zero (int64, nothing drawn); ``running_mean``: ``N(0, 0.1^2)``;
    ``running_var``: ``U(0.75, 1.25)``; tensors of 2+ dimensions (convolution / linear
    weights): ``N(0, 1) * gain / sqrt(fan_in)`` with ``fan_in = prod(shape[1:])``; other
    1-D ``...weight`` (batch-norm scale): ``1 + N(0, 0.1^2)``; other 1-D tensors (biases):
    ``N(0, 0.1^2)``.

    Args:
        shapes: ``(name, shape)`` pairs, e.g. ``[(k, v.shape) for k, v in sd.items()]``.
        seed: generator seed.
        gain: scale of the weight matrices.

    Returns:
        ``{name: tensor}`` in sorted-name order.
    """
    generator = torch.Generator().manual_seed(int(seed))
    out: dict[str, torch.Tensor] = {}
    for name, shape in sorted((str(n), tuple(int(s) for s in sh)) for n, sh in shapes):
        out[name] = _draw(name, shape, generator, gain)
    return out


def _draw(name: str, shape: tuple[int, ...], generator: torch.Generator, gain: float) -> torch.Tensor:
    if name.endswith("num_batches_tracked"):
        return torch.zeros(shape, dtype=torch.int64)
    if name.endswith("running_var"):
        return 0.75 + 0.5 * torch.rand(shape, generator=generator)
    noise = torch.randn(shape, generator=generator)
    if name.endswith("running_mean"):
        return 0.1 * noise
    if len(shape) >= 2:
        return noise * (gain / math.sqrt(math.prod(shape[1:])))
    if name.endswith("weight"):
        return 1.0 + 0.1 * noise
    return 0.1 * noise
