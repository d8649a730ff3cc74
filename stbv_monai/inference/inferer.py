"""MONAI ``Inferer``s that segment a whole video from its reference masks, for evaluators.

Each way of predicting a video is one: propagation through the memory network
(:class:`VideoPropagationInferer`), the zero-motion baseline (:class:`CopyReferenceInferer`) and
predictions another tool wrote (:class:`FolderInferer`). They share the call
``inferer(frames, network, references=..., entry=...)``, so one evaluator runs them all.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.inferers import Inferer

from stbv_monai.data.ids import entry_id, legacy_id
from stbv_monai.data.io import read_mask, video_id
from stbv_monai.errors import InputError
from stbv_monai.inference.core import ProgressFn, PropagationStats, propagate
from stbv_monai.inference.schedule import assign_sources

__all__ = ["CopyReferenceInferer", "FolderInferer", "VideoPropagationInferer"]

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
        show_frames: a progress bar of each video's propagated frames (``tqdm`` on stderr, cleared
            when the video is done), under a bar of videos if one is attached.
    """

    def __init__(
        self,
        mem_every: int = 5,
        top_k: int | None = 20,
        bidirectional: bool = True,
        max_memory_frames: int | None = None,
        amp: bool = False,
        show_frames: bool = False,
    ) -> None:
        super().__init__()
        self.settings = dict(
            mem_every=mem_every, top_k=top_k, bidirectional=bidirectional, max_memory_frames=max_memory_frames, amp=amp
        )
        self.show_frames = show_frames

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
        entry: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """Propagate; returns probabilities shaped like ``inputs`` (``entry`` names the video's bar)."""
        videos = _as_videos(inputs, "inputs")
        refs = _batch_references(references, labels, labelled_frames, inputs, len(videos))
        outs = []
        for v, r in zip(videos, refs):
            with self._progress(progress, int(v.shape[0]) - len(r), entry) as advance:
                outs.append(propagate(network, v, r, progress=advance, stats=stats, **self.settings))  # type: ignore[arg-type]
        return torch.stack(outs).reshape(inputs.shape)

    @contextlib.contextmanager
    def _progress(self, progress: ProgressFn | None, total: int,
                  entry: Mapping[str, Any] | None) -> Iterator[ProgressFn | None]:
        if progress is not None or not self.show_frames:
            yield progress
            return
        from tqdm import tqdm

        name = entry_id(entry) if entry else "video"
        with tqdm(total=total, desc=f"frames of {name}", unit="frame", leave=False) as bar:

            def advance(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            yield advance


class CopyReferenceInferer(Inferer):
    """The zero-motion baseline: every frame gets the mask of its nearest reference (the same merge rule).

    What a tracker must beat: it scores well only where the lesion neither moves nor deforms.
    """

    def __call__(self, inputs: torch.Tensor, network: Any = None, references: References | None = None,  # type: ignore[override]
                 *args: Any, **kwargs: Any) -> torch.Tensor:
        """``(T, H, W)`` frames and ``{frame: mask}`` -> ``(T, H, W)`` masks as probabilities."""
        if not references:
            raise InputError("references", "the copy baseline needs at least one reference mask")
        sources = assign_sources(inputs.shape[0], references.keys())
        return torch.stack([references[r].float() for r, _ in sources]).to(inputs.device)


class FolderInferer(Inferer):
    """Read existing predictions, ``<folder>/<video id>.nii.gz`` (or any mask format), to score other tools.

    A prediction named by file name alone (the naming before ids were unique) cannot be told
    apart from another site's video of the same name, so it is reported, not read.

    Raises:
        InputError: the folder does not exist.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        super().__init__()
        self.root = Path(folder)
        if not self.root.is_dir():
            raise InputError(self.root, "predictions folder not found")

    def __call__(self, inputs: torch.Tensor, network: Any = None, references: References | None = None,  # type: ignore[override]
                 *args: Any, entry: Mapping[str, Any] | None = None, **kwargs: Any) -> torch.Tensor:
        """The ``(T, H, W)`` prediction of ``entry``'s video, checked against the frames' shape."""
        if entry is None:
            raise InputError("entry", "reading predictions needs the datalist entry of the video")
        vid, old = entry_id(entry), legacy_id(entry)
        candidates = sorted(p for p in self.root.iterdir() if video_id(p) == vid)
        if not candidates:
            legacy = sorted(p.name for p in self.root.iterdir() if old != vid and video_id(p) == old)
            hint = (f"; {legacy[0]} is named by file name only (the old naming), rename it to the id if it is "
                    f"this video's ({entry['image']})") if legacy else ""
            raise InputError(self.root, f"no prediction for video '{vid}' (expected e.g. {vid}.nii.gz or a {vid}/ "
                                        "folder)" + hint)
        mask = read_mask(candidates[0])
        if mask.shape != tuple(inputs.shape):
            raise InputError(candidates[0], f"prediction shape {mask.shape} differs from video shape "
                                            f"{tuple(inputs.shape)}")
        return torch.from_numpy(mask.astype(np.float32)).to(inputs.device)


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
