"""Inference core: propagate reference masks through a whole video with a stateless network.

Per pass (one reference, one direction) the core owns a :class:`MemoryBank` holding the
reference permanently; each next frame is key-encoded, read out (top-k), decoded and turned
into STCN's object probability (soft aggregation with background); a frame at distance
``d`` from the reference with ``d % mem_every == 0`` is value-encoded and memorised, unless it
is the last frame of the pass. For a reference at frame 0 this is STCN's rule
``ti % mem_every == 0``. Frames are ImageNet-normalised (grayscale repeated x3), padded to
a multiple of 16 as STCN does, and the probabilities cropped back. Videos of another size than
the network's training resolution are resized to it and the probabilities back
(:mod:`stbv_monai.inference.scale`).

Which reference segments which frame is decided by :mod:`stbv_monai.inference.schedule`
(nearest reference in time, ties to the earlier one), so each frame is propagated once.

A reference whose mask is empty (lesion absent) gives zeros for all frames assigned to it,
without running the network: an empty memory would otherwise let an imperfect network
hallucinate a lesion. Frames of other references are unaffected.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields

import torch
import torch.nn as nn

from stbv_monai.errors import InputError
from stbv_monai.inference.checks import check_frames, check_references, check_settings
from stbv_monai.inference.memory_bank import MemoryBank
from stbv_monai.inference.scale import resize_frames, resize_references, resolve_size
from stbv_monai.inference.schedule import Pass, plan_passes
from stbv_monai.networks.memory_ops import object_probability
from stbv_monai.networks.preprocess import normalize_frames, pad_to_multiple, unpad

__all__ = ["PropagationStats", "propagate"]

logger = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]


@dataclass
class PropagationStats:
    """Counters filled by :func:`propagate` (pass an instance as ``stats=``).

    Attributes:
        n_frames: frames in the video.
        n_references: reference frames given.
        n_passes: propagation passes run (empty references excluded).
        n_propagated_frames: frames segmented by reading the memory (``T - references`` at most).
        n_key_encodings: key-encoder calls (each frame at most once, references included).
        n_value_encodings: value-encoder calls (references + memorised frames).
        n_zero_frames: frames set to zero because their reference mask is empty.
        max_memory_frames: the most frames any pass held in memory.
        network_size: the ``(H, W)`` the network ran at (the video's own, or its training resolution).
    """

    n_frames: int = 0
    n_references: int = 0
    n_passes: int = 0
    n_propagated_frames: int = 0
    n_key_encodings: int = 0
    n_value_encodings: int = 0
    n_zero_frames: int = 0
    max_memory_frames: int = 0
    network_size: tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class _Settings:
    mem_every: int
    top_k: int | None
    max_memory_frames: int | None


def propagate(
    model: nn.Module,
    frames: torch.Tensor,
    references: Mapping[int, torch.Tensor],
    *,
    mem_every: int = 5,
    top_k: int | None = 20,
    bidirectional: bool = True,
    max_memory_frames: int | None = None,
    amp: bool = False,
    size: Sequence[int] | None = None,
    progress: ProgressFn | None = None,
    stats: PropagationStats | None = None,
) -> torch.Tensor:
    """Segment every frame of a video from one or more reference masks.

    Args:
        model: an :class:`~stbv_monai.networks.STCN` (or a module holding one as ``.network``),
            on the frames' device; it is switched to ``eval()`` for the call and restored.
        frames: ``(T, H, W)`` float grayscale in [0, 1], any ``H, W``; its device is used.
        references: ``{frame index: (H, W) mask}``, 0/1 float or bool, any number, anywhere.
            An empty mask means "no lesion there": the frames it is nearest to stay zero.
        mem_every: memorise every ``mem_every``-th frame counted from the reference (STCN: 5).
        top_k: top-k readout (STCN: 20); ``None`` for the full softmax.
        bidirectional: propagate backward as well as forward and keep, per frame, the pass of
            the nearest reference (ties: the earlier reference). ``False``: forward only from
            the nearest preceding reference; frames before the first reference are still
            propagated backward from it.
        max_memory_frames: bound the memory (reference + most recent memorised frames, FIFO),
            so long videos keep a flat memory and cost; ``None``: unbounded, as STCN.
        amp: run under ``torch.autocast`` for the frames' device type (for GPUs).
        size: ``(H', W')`` to run the network at; ``None``: the resolution the network records
            it was trained at (``STCN.trained_at()``), or the video's own when it records none.
            Frames and references are resized to it and the probabilities back to ``(H, W)``.
        progress: called as ``progress(done, total)`` after each propagated frame.
        stats: a :class:`PropagationStats` to fill.

    Returns:
        ``(T, H, W)`` float32 lesion probabilities on the frames' device; reference frames
        carry their given mask. The work runs under ``torch.inference_mode()``; the result is
        an ordinary tensor (copied out), so callers may edit it in place.

    Raises:
        InputError: frames not ``(T, H, W)`` floats in [0, 1] or not finite, no reference, a
            reference index out of range or mask of the wrong size, bad settings, model on
            another device.
    """
    frames = check_frames(frames)
    refs = check_references(references, frames)
    check_settings(mem_every, top_k, max_memory_frames)
    network = _unwrap(model, frames.device)
    stats = _reset(stats if stats is not None else PropagationStats(), frames.shape[0], len(refs))
    settings = _Settings(int(mem_every), None if top_k is None else int(top_k), max_memory_frames)
    native = tuple(frames.shape[-2:])
    work = resolve_size(size if size is not None else _trained_at(network), native)
    stats.network_size = work or native
    if work is None:
        out = _propagate(network, frames, refs, settings, bidirectional, amp, progress, stats)
    else:
        small = _propagate(network, resize_frames(frames, work), resize_references(refs, work), settings,
                           bidirectional, amp, progress, stats)
        out = resize_frames(small, native)
        for t, mask in refs.items():
            out[t] = mask
    logger.debug("propagate: %s", stats)
    return out.clone()  # outside inference mode: an ordinary tensor


@torch.inference_mode()
def _propagate(
    network: nn.Module,
    frames: torch.Tensor,
    refs: dict[int, torch.Tensor],
    settings: _Settings,
    bidirectional: bool,
    amp: bool,
    progress: ProgressFn | None,
    stats: PropagationStats,
) -> torch.Tensor:
    out = torch.zeros(frames.shape, dtype=torch.float32, device=frames.device)
    for t, mask in refs.items():
        out[t] = mask
    passes = plan_passes(frames.shape[0], refs, bidirectional)
    tracker = _Progress(sum(len(p.frames) for p in passes), progress)
    with _eval_mode(network), torch.autocast(device_type=frames.device.type, enabled=amp):
        encoded: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        for p in passes:
            if not bool(refs[p.reference].any()):
                stats.n_zero_frames += len(p.frames)
                tracker.step(len(p.frames))
                continue
            if p.reference not in encoded:
                encoded[p.reference] = _encode_reference(network, frames[p.reference], refs[p.reference], stats)
            stats.n_passes += 1
            for t, prob in _run_pass(network, frames, p, encoded[p.reference], settings, stats):
                out[t] = prob
                tracker.step(1)
    return out


def _reset(stats: PropagationStats, n_frames: int, n_references: int) -> PropagationStats:
    for f in fields(stats):
        setattr(stats, f.name, f.default)
    stats.n_frames, stats.n_references = int(n_frames), int(n_references)
    return stats


def _prepare(frame: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """``(H, W)`` in [0, 1] -> normalised, padded ``(1, 3, H', W')`` and the padding."""
    return pad_to_multiple(normalize_frames(frame[None, None].float()))


def _encode_reference(
    network: nn.Module, frame: torch.Tensor, mask: torch.Tensor, stats: PropagationStats
) -> tuple[torch.Tensor, torch.Tensor]:
    x, _ = _prepare(frame)
    padded_mask, _ = pad_to_multiple(mask[None, None])
    feats = network.encode_key(x)
    value = network.encode_value(x, feats.f16, padded_mask.to(x.dtype))
    stats.n_key_encodings += 1
    stats.n_value_encodings += 1
    return feats.key, value


def _run_pass(
    network: nn.Module,
    frames: torch.Tensor,
    p: Pass,
    reference: tuple[torch.Tensor, torch.Tensor],
    settings: _Settings,
    stats: PropagationStats,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(t, (H, W) probability)`` for the frames of one pass, in order."""
    bank = MemoryBank(settings.max_memory_frames)
    bank.add(*reference, permanent=True)
    for i, t in enumerate(p.frames):
        x, pad = _prepare(frames[t])
        feats = network.encode_key(x)
        memory_key, memory_value = bank.tensors()
        readout = network.read_memory(memory_key, memory_value, feats.key, settings.top_k)
        prob = object_probability(network.segment(readout, feats.f16, feats.f8, feats.f4))
        stats.n_key_encodings += 1
        stats.n_propagated_frames += 1
        stats.max_memory_frames = max(stats.max_memory_frames, bank.num_frames)
        if i < len(p.frames) - 1 and abs(t - p.reference) % settings.mem_every == 0:
            bank.add(feats.key, network.encode_value(x, feats.f16, prob))
            stats.n_value_encodings += 1
        yield t, unpad(prob, pad)[0, 0].float()


def _trained_at(network: nn.Module) -> tuple[int, int] | None:
    trained_at = getattr(network, "trained_at", None)
    return trained_at() if callable(trained_at) else None


def _unwrap(model: nn.Module, device: torch.device) -> nn.Module:
    network = model.network if isinstance(getattr(model, "network", None), nn.Module) else model
    for name in ("encode_key", "encode_value", "read_memory", "segment"):
        if not callable(getattr(network, name, None)):
            raise InputError("model", f"{type(network).__name__} has no {name}(); expected an STCN network")
    param = next(iter(network.parameters()), None)
    if param is not None and param.device != device:
        raise InputError("model", f"is on {param.device} but the frames are on {device}; move one of them")
    return network


@contextlib.contextmanager
def _eval_mode(network: nn.Module) -> Iterator[None]:
    was_training = network.training
    network.eval()
    try:
        yield
    finally:
        network.train(was_training)


class _Progress:
    def __init__(self, total: int, callback: ProgressFn | None) -> None:
        self.total, self.done, self.callback = total, 0, callback

    def step(self, n: int) -> None:
        self.done += n
        if self.callback is not None and n:
            self.callback(self.done, self.total)
