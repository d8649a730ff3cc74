"""A MONAI ``Inferer`` that propagates reference masks through videos, for evaluators."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from monai.inferers import Inferer

from stbv_monai.errors import InputError
from stbv_monai.inference.core import ProgressFn, PropagationStats, propagate

__all__ = ["VideoPropagationInferer"]

References = Mapping[int, torch.Tensor]


class VideoPropagationInferer(Inferer):
    """Wrap :func:`~stbv_monai.inference.propagate` in MONAI's ``Inferer`` interface.

    ``inputs`` is one video ``(T, H, W)`` or a batch ``(B, T, H, W)`` / ``(B, 1, T, H, W)``
    (grayscale in [0, 1]); the output has the same shape, holding lesion probabilities.
    References come either as ``references`` (``{frame: (H, W) mask}``, or a list of such per
    batch item) or as ``labels`` (mask videos shaped like ``inputs``) plus ``labelled_frames``
    (indices, or a list of index lists per batch item), which picks the reference masks out of
    the label video, as an evaluator with ground truth on a few frames has them.

    Args:
        mem_every, top_k, bidirectional, max_memory_frames, amp: see ``propagate``.
    """

    def __init__(
        self,
        mem_every: int = 5,
        top_k: int | None = 20,
        bidirectional: bool = True,
        max_memory_frames: int | None = None,
        amp: bool = False,
    ) -> None:
        super().__init__()
        self.settings = dict(
            mem_every=mem_every, top_k=top_k, bidirectional=bidirectional, max_memory_frames=max_memory_frames, amp=amp
        )

    def __call__(  # type: ignore[override]
        self,
        inputs: torch.Tensor,
        network: Callable[..., Any],
        references: References | Sequence[References] | None = None,
        *args: Any,
        labels: torch.Tensor | None = None,
        labelled_frames: Sequence[int] | Sequence[Sequence[int]] | None = None,
        progress: ProgressFn | None = None,
        stats: PropagationStats | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """Propagate; returns probabilities shaped like ``inputs``."""
        videos = _as_videos(inputs, "inputs")
        refs = _batch_references(references, labels, labelled_frames, inputs, len(videos))
        outs = [
            propagate(network, v, r, progress=progress, stats=stats, **self.settings)  # type: ignore[arg-type]
            for v, r in zip(videos, refs)
        ]
        return torch.stack(outs).reshape(inputs.shape)


def _as_videos(x: torch.Tensor, name: str) -> list[torch.Tensor]:
    if not isinstance(x, torch.Tensor) or x.dim() not in (3, 4, 5) or (x.dim() == 5 and x.shape[1] != 1):
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise InputError(name, f"expected (T, H, W), (B, T, H, W) or (B, 1, T, H, W), got {shape}")
    if x.dim() == 3:
        return [x]
    return list(x.reshape(x.shape[0], *x.shape[-3:]))


def _batch_references(
    references: References | Sequence[References] | None,
    labels: torch.Tensor | None,
    labelled_frames: Sequence[int] | Sequence[Sequence[int]] | None,
    inputs: torch.Tensor,
    batch: int,
) -> list[References]:
    if references is not None:
        refs = [references] if isinstance(references, Mapping) else list(references)
    elif labels is not None and labelled_frames is not None:
        masks = _as_videos(labels, "labels")
        frames = labelled_frames.tolist() if isinstance(labelled_frames, torch.Tensor) else list(labelled_frames)
        per_item = frames if frames and isinstance(frames[0], (list, tuple, torch.Tensor)) else [frames] * batch
        if len(masks) != batch or len(per_item) != batch:
            raise InputError(
                "labels", f"need {batch} label videos and frame lists, got {len(masks)} and {len(per_item)}"
            )
        refs = [{int(t): _label_frame(m, int(t)) for t in ts} for m, ts in zip(masks, per_item)]
    else:
        raise InputError("references", "pass references={frame: mask} or labels= with labelled_frames=")
    if len(refs) != batch:
        raise InputError("references", f"{batch} videos but {len(refs)} reference sets")
    return refs


def _label_frame(labels: torch.Tensor, t: int) -> torch.Tensor:
    if not 0 <= t < labels.shape[0]:
        raise InputError("labelled_frames", f"frame index {t} is out of range for a video of {labels.shape[0]} frames")
    return labels[t]
