"""Training curves as a PNG (the loss terms of a stage over its iterations)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

__all__ = ["plot_curves"]


def plot_curves(curves: Mapping[str, Sequence[tuple[int, float]]], path: str | os.PathLike,
                title: str | None = None) -> Path:
    """One line per curve of ``(step, value)`` points, log-scaled when all values are positive; written atomically."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    from stbv_monai.data.io import atomic_path

    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    positive = True
    for name, points in curves.items():
        if points:
            steps, values = zip(*points)
            ax.plot(steps, values, lw=1, label=name)
            positive = positive and min(values) > 0
    if positive:
        ax.set_yscale("log")
    ax.set(xlabel="iteration", ylabel="value", title=title or Path(path).stem)
    ax.legend(loc="upper right", fontsize=8)
    out = Path(path)
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as fh:
            fig.savefig(fh, format="png", dpi=100)
    return out
