"""Tests of stbv_monai.inference: STCN equivalence, scheduling, merge, memory, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from stbv_monai.errors import InputError
from stbv_monai.inference import (
    BACKWARD,
    FORWARD,
    MemoryBank,
    PropagationStats,
    VideoPropagationInferer,
    assign_sources,
    plan_passes,
    propagate,
)
from stbv_monai.networks import STCN, KeyFeatures, PropagationNet, load_pretrained, read_memory
from stbv_monai.networks.synthetic_weights import seeded_state_dict

FIXTURE = Path(__file__).parent / "fixtures" / "stcn_reference.pt"
TINY = dict(key_backbone="resnet18", key_width=8, value_width=8, key_dim=8, value_dim=16, decoder_dims=(16, 8, 8))


def tiny(seed: int = 0) -> STCN:
    torch.manual_seed(seed)
    return STCN(**TINY).eval()


class CopyNet(nn.Module):
    """A stand-in network whose prediction is the average memorised mask (16x16 blocks).

    Keys one-hot encode the position, so each query position reads the same position of every
    memorised frame; values are masks pooled to stride 16 and ``segment`` upsamples the
    readout. A frame's output thus shows which reference's memory produced it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def encode_key(self, x: torch.Tensor) -> KeyFeatures:
        h, w = x.shape[2] // 16, x.shape[3] // 16
        key = 10.0 * torch.eye(h * w, dtype=x.dtype).view(1, h * w, h, w).expand(x.shape[0], -1, -1, -1)
        return KeyFeatures(key, None, key, key, key)

    def encode_value(self, x, f16, mask, other_mask=None):
        return F.avg_pool2d(mask, 16)

    def read_memory(self, mk, mv, qk, top_k=None):
        b, _, h, w = qk.shape
        return read_memory(mk, mv, qk.flatten(2), top_k).view(b, -1, h, w)

    def segment(self, readout, f16, f8, f4):
        p = F.interpolate(readout, scale_factor=16.0, mode="nearest").clamp(1e-4, 1 - 1e-4)
        return torch.logit(p) / 2  # object_probability(x) = sigmoid(2x) = p


def block_mask(row: int, col: int, size: int = 32) -> torch.Tensor:
    m = torch.zeros(size, size)
    m[16 * row : 16 * row + 16, 16 * col : 16 * col + 16] = 1
    return m


# ---------------------------------------------------------------- STCN equivalence


def test_matches_stcn_inference_core_fixture():
    fx = torch.load(FIXTURE, weights_only=True)
    weights = seeded_state_dict(zip(fx["param_names"], fx["param_shapes"]), fx["seed"], fx["gain"])
    net = STCN()
    report = load_pretrained(net, weights, strict=True)
    assert report.adapted == ["value_encoder.conv1.weight"]  # 4-channel conv1 padded as STCN's eval
    frames = fx["frames"].float() / 255.0
    stats = PropagationStats()
    out = propagate(net, frames, {0: fx["mask"]}, top_k=fx["top_k"], mem_every=fx["mem_every"], stats=stats)
    assert out.shape == fx["probs"].shape
    assert (out - fx["probs"]).abs().max().item() <= 1e-4
    assert stats.n_value_encodings == 2  # the reference + frame 5 (STCN: ti % 5 == 0, not last)


# ---------------------------------------------------------------- scheduling


def test_assign_sources_nearest_reference_ties_to_earlier():
    src = assign_sources(12, [8, 2])
    assert src[:2] == [(2, BACKWARD)] * 2
    assert src[2] == (2, 0) and src[8] == (8, 0)
    assert src[3:6] == [(2, FORWARD)] * 3 and src[6:8] == [(8, BACKWARD)] * 2
    assert src[9:] == [(8, FORWARD)] * 3
    assert assign_sources(9, [2, 6])[4] == (2, FORWARD)  # equidistant: the earlier reference
    uni = assign_sources(12, [2, 8], bidirectional=False)
    assert uni[:2] == [(2, BACKWARD)] * 2 and uni[3:8] == [(2, FORWARD)] * 5 and uni[9:] == [(8, FORWARD)] * 3


def test_plan_passes_cover_each_frame_once_in_order():
    passes = plan_passes(20, [4, 11, 15])
    frames = [t for p in passes for t in p.frames]
    assert sorted(frames) == [t for t in range(20) if t not in (4, 11, 15)]
    for p in passes:
        assert list(p.frames) == sorted(p.frames, key=lambda t: abs(t - p.reference))
        assert abs(p.frames[0] - p.reference) == 1
        assert all((t - p.reference) * p.direction > 0 for t in p.frames)


def test_merge_takes_each_frame_from_its_nearest_reference():
    frames = torch.rand(12, 32, 32)
    refs = {2: block_mask(0, 0), 8: block_mask(1, 1)}
    stats = PropagationStats()
    out = propagate(CopyNet(), frames, refs, mem_every=2, stats=stats)
    for t, (ref, _) in enumerate(assign_sources(12, refs)):
        assert torch.allclose(out[t], refs[ref], atol=1e-3), t
    assert stats.n_propagated_frames == 10 and stats.n_key_encodings == 12 and stats.n_passes == 4


@pytest.mark.parametrize("references", [[5], [0, 3, 6, 9, 11]], ids=["1", "5"])
def test_merge_with_one_or_five_references(references):
    """Quadro-inference generalised: every frame from its nearest reference, each frame propagated once."""
    refs = {t: block_mask(i % 2, i // 2) for i, t in enumerate(references)}
    stats = PropagationStats()
    out = propagate(CopyNet(), torch.rand(12, 32, 32), refs, mem_every=2, stats=stats)
    for t in range(12):
        nearest = min(references, key=lambda r: (abs(r - t), r))  # ties: the earlier reference
        assert torch.allclose(out[t], refs[nearest], atol=1e-3), t
    assert stats.n_propagated_frames == 12 - len(references)


def test_unidirectional_uses_preceding_reference():
    refs = {2: block_mask(0, 0).numpy(), 8: block_mask(1, 1).bool()}  # numpy and bool masks are accepted
    out = propagate(CopyNet(), torch.rand(12, 32, 32).numpy(), refs, bidirectional=False)
    refs = {t: torch.as_tensor(m).float() for t, m in refs.items()}
    for t in range(12):
        expected = refs[2] if t < 8 else refs[8]
        assert torch.allclose(out[t], expected, atol=1e-3), t


def test_two_references_cost_about_t_frame_propagations():
    counts = []
    stats = PropagationStats()
    propagate(tiny(), torch.rand(10, 32, 32), {1: block_mask(0, 0), 7: block_mask(1, 0)}, stats=stats,
              progress=lambda done, total: counts.append((done, total)))
    assert stats.n_propagated_frames == 8 and stats.n_key_encodings == 10
    assert counts[-1] == (8, 8) and [d for d, _ in counts] == list(range(1, 9))


# ---------------------------------------------------------------- memory


def test_memory_bank_bounded_keeps_reference_and_recent():
    bank = MemoryBank(max_frames=3)
    bank.add(torch.full((1, 2, 1, 1), -1.0), torch.full((1, 3, 1, 1), -1.0), permanent=True)
    for i in range(10):
        bank.add(torch.full((1, 2, 1, 1), float(i)), torch.full((1, 3, 1, 1), float(i)))
        assert bank.num_frames <= 3
    keys, values = bank.tensors()
    assert keys[0, 0].tolist() == [-1.0, 8.0, 9.0] and values.shape == (1, 3, 3)
    unbounded = MemoryBank()
    for _ in range(10):
        unbounded.add(torch.zeros(1, 2, 1, 1), torch.zeros(1, 3, 1, 1))
    assert unbounded.num_frames == 10


def test_propagate_bounded_memory():
    frames, refs = torch.rand(15, 32, 32), {0: block_mask(0, 1)}
    bounded, unbounded = PropagationStats(), PropagationStats()
    out = propagate(CopyNet(), frames, refs, mem_every=1, max_memory_frames=3, stats=bounded)
    propagate(CopyNet(), frames, refs, mem_every=1, stats=unbounded)
    assert bounded.max_memory_frames == 3 and unbounded.max_memory_frames == 14
    assert torch.allclose(out[14], refs[0], atol=1e-3)


def test_mem_every_counts_from_the_reference():
    stats = PropagationStats()
    propagate(CopyNet(), torch.rand(13, 32, 32), {6: block_mask(0, 0)}, mem_every=3, stats=stats)
    # backward 5..0: memorise 3 (d=3) but not 0 (last); forward 7..12: memorise 9 (d=3), not 12 (last)
    assert stats.n_value_encodings == 1 + 2


# ---------------------------------------------------------------- behaviour


def test_odd_sizes_are_padded_and_cropped_like_the_export_net():
    net = tiny()
    frames = torch.rand(2, 37, 51)
    mask = torch.zeros(37, 51)
    mask[10:25, 12:40] = 1
    out = propagate(net, frames, {0: mask}, top_k=None)
    assert out.shape == (2, 37, 51) and torch.equal(out[0], mask)
    with torch.no_grad():
        logits = PropagationNet(net)(torch.stack([frames[0], mask, frames[1]])[None])
    assert torch.allclose(out[1], torch.sigmoid(logits[0, 0]), atol=1e-5)


def test_empty_reference_gives_zeros_without_propagating():
    frames = torch.rand(10, 32, 32)
    stats = PropagationStats()
    out = propagate(tiny(), frames, {0: torch.zeros(32, 32), 9: block_mask(1, 1)}, stats=stats)
    sources = assign_sources(10, [0, 9])
    for t, (ref, _) in enumerate(sources):
        if ref == 0:
            assert torch.all(out[t] == 0)
    assert stats.n_zero_frames == 4 and stats.n_propagated_frames == 4
    assert out[5:9].sum() > 0


def test_deterministic_restores_mode_and_respects_device():
    net = tiny().train()
    frames, refs = torch.rand(4, 32, 32), {1: block_mask(0, 0)}
    a, b = propagate(net, frames, refs), propagate(net, frames, refs)
    assert torch.equal(a, b) and net.training
    assert a.device == frames.device and a.dtype == torch.float32
    a[0] = 1  # an ordinary tensor, not an inference-mode one
    with pytest.raises(InputError, match="model: is on meta"):
        propagate(tiny().to("meta"), frames, refs)


def test_network_runs_at_its_training_resolution_whatever_the_video_size():
    net = tiny()
    net.training_size.copy_(torch.tensor([32, 32]))
    small = torch.rand(6, 32, 32)
    big = F.interpolate(small[None], size=(64, 96), mode="bilinear", align_corners=False)[0]
    ref_small = block_mask(1, 0)
    ref_big = F.interpolate(ref_small[None, None], size=(64, 96), mode="nearest")[0, 0]
    stats = PropagationStats()
    out_big = propagate(net, big, {0: ref_big}, stats=stats)
    assert stats.network_size == (32, 32) and out_big.shape == (6, 64, 96)
    assert torch.equal(out_big[0], ref_big)  # the reference keeps its native mask
    out_small = propagate(net, small, {0: ref_small})
    back = F.interpolate(out_big[None], size=(32, 32), mode="area")[0]
    assert (back[1:] - out_small[1:]).abs().mean() < 0.05  # the same prediction, at either storage size
    native = PropagationStats()
    propagate(net, big, {0: ref_big}, size=(64, 96), stats=native)  # an explicit size wins
    assert native.network_size == (64, 96)
    with pytest.raises(InputError, match="size"):
        propagate(net, big, {0: ref_big}, size=(0, 0))


def test_amp_runs_on_cpu():
    out = propagate(tiny(), torch.rand(3, 32, 32), {0: block_mask(0, 0)}, amp=True)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_inferer_wraps_propagate():
    net = tiny()
    video = torch.rand(1, 1, 6, 32, 32)
    labels = torch.zeros(1, 1, 6, 32, 32)
    labels[..., 0, :16, :16] = 1
    labels[..., 5, 16:, 16:] = 1
    inferer = VideoPropagationInferer(top_k=20, mem_every=5)
    out = inferer(video, net, labels=labels, labelled_frames=[0, 5])
    expected = propagate(net, video[0, 0], {0: labels[0, 0, 0], 5: labels[0, 0, 5]})
    assert out.shape == video.shape and torch.allclose(out[0, 0], expected)
    assert torch.allclose(inferer(video[0, 0], net, {0: labels[0, 0, 0], 5: labels[0, 0, 5]}), expected)
    with pytest.raises(InputError, match="references"):
        inferer(video, net)
    with pytest.raises(InputError, match="labelled_frames"):
        inferer(video, net, labels=labels, labelled_frames=[9])


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "frames, refs, match",
    [
        (torch.rand(4, 32, 32), {0: torch.zeros(16, 32)}, r"references\[0\]: mask has shape \(16, 32\)"),
        (torch.rand(4, 32, 32), {4: torch.zeros(32, 32)}, "index 4 is out of range for a video of 4 frames"),
        (torch.rand(4, 32, 32), {-1: torch.zeros(32, 32)}, "out of range"),
        (torch.rand(4, 32, 32), {}, "no reference frame given"),
        (torch.rand(4, 32, 32), None, "no reference frame given"),
        (torch.rand(4, 32, 32), {0: torch.full((32, 32), 2.0)}, "0/1"),
        (torch.rand(4, 32, 32).index_fill_(0, torch.tensor([2]), torch.nan), {0: torch.zeros(32, 32)}, r"NaN.*\[2\]"),
        (torch.rand(4, 32, 32).index_fill_(0, torch.tensor([1]), torch.inf), {0: torch.zeros(32, 32)}, "infinite"),
        (torch.rand(1, 4, 32, 32), {0: torch.zeros(32, 32)}, r"frames: expected a grayscale video \(T, H, W\)"),
        (torch.randint(0, 255, (4, 32, 32)), {0: torch.zeros(32, 32)}, "floating-point"),
        (255 * torch.rand(4, 32, 32), {0: torch.zeros(32, 32)}, r"must lie in \[0, 1\]"),
    ],
)
def test_bad_input_raises_input_error(frames, refs, match):
    with pytest.raises(InputError, match=match):
        propagate(CopyNet(), frames, refs)


def test_bad_settings():
    frames, refs = torch.rand(3, 32, 32), {0: torch.zeros(32, 32)}
    for kwargs in ({"mem_every": 0}, {"top_k": 0}, {"max_memory_frames": 0}):
        with pytest.raises(InputError):
            propagate(CopyNet(), frames, refs, **kwargs)
    with pytest.raises(InputError, match="no encode_key"):
        propagate(nn.Linear(2, 2), frames, refs)
