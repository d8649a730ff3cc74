"""Tests of stbv_monai.networks: shapes, statelessness, memory ops, wrappers, weight loading."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from stbv_monai.errors import InputError
from stbv_monai.networks import (
    STCN,
    ClipTrainingWrapper,
    PropagationNet,
    affinity,
    build_network,
    load_pretrained,
    normalize_frames,
    object_probability,
    read_memory,
    readout,
    soft_aggregate,
    top_k_readout,
)
from stbv_monai.networks.stcn import TRAINING_SIZE_KEY
from stbv_monai.networks.synthetic_weights import seeded_state_dict

TINY = dict(key_backbone="resnet18", key_width=8, value_width=8, key_dim=8, value_dim=16, decoder_dims=(16, 8, 8))


def tiny(seed: int = 0, **kw) -> STCN:
    torch.manual_seed(seed)
    return STCN(**{**TINY, **kw}).eval()


@pytest.mark.parametrize(
    "name, kwargs, c16",
    [
        ("stcn", {}, 1024),
        ("stcn_small", {}, 128),
        ("stcn", {"key_backbone": "resnext50"}, 1024),
        ("stcn", {"key_backbone": "resnet18"}, 256),
    ],
)
def test_shapes_per_size_and_backbone(name, kwargs, c16):
    net = build_network(name, **kwargs).eval()
    x = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        feats = net.encode_key(x)
        value = net.encode_value(x, feats.f16, torch.rand(2, 1, 32, 48))
        out = net.read_memory(feats.key[:1].unsqueeze(2), value[:1].unsqueeze(2), feats.key[1:], top_k=3)
        logits = net.segment(out, feats.f16[1:], feats.f8[1:], feats.f4[1:])
    assert feats.key.shape == (2, net.key_dim, 2, 3) and feats.shrinkage is None
    assert feats.f16.shape == (2, c16, 2, 3) and feats.f8.shape[-2:] == (4, 6) and feats.f4.shape[-2:] == (8, 12)
    assert value.shape == (2, net.value_dim, 2, 3)
    assert out.shape == (1, net.value_dim, 2, 3)
    assert logits.shape == (1, 1, 32, 48)


def test_default_is_paper_size_and_presets():
    n_params = sum(p.numel() for p in STCN().parameters())
    assert 54.0e6 < n_params < 55.0e6
    names = [k for k in STCN().state_dict() if k != TRAINING_SIZE_KEY]
    assert len(names) == 405  # STCN's own entries, plus the recorded training resolution
    small = sum(p.numel() for p in build_network("stcn_small").parameters())
    assert small < 5e6
    with pytest.raises(ValueError):
        build_network("nope")
    with pytest.raises(ValueError):
        STCN(key_backbone="vgg")


def test_stateless_same_input_same_output():
    net = tiny()
    x = torch.rand(1, 3, 3, 32, 32)
    wrapper = ClipTrainingWrapper(net).eval()
    mask = (torch.rand(1, 1, 32, 32) > 0.5).float()
    with torch.no_grad():
        a, b = wrapper(x, mask), wrapper(x, mask)
    for key in a:
        assert torch.equal(a[key], b[key])


def test_affinity_matches_naive_l2_softmax():
    torch.manual_seed(1)
    mk, qk = torch.randn(2, 8, 30), torch.randn(2, 8, 7)
    dist = ((mk.unsqueeze(3) - qk.unsqueeze(2)) ** 2).sum(1)  # (B, N, M) full squared distance
    expected = torch.softmax(-dist / math.sqrt(8), dim=1)
    assert torch.allclose(affinity(mk, qk), expected, atol=1e-6)
    mv = torch.randn(2, 5, 30)
    naive = torch.einsum("bcn,bnm->bcm", mv, expected)
    assert torch.allclose(readout(affinity(mk, qk), mv), naive, atol=1e-5)


def test_top_k_readout_matches_dense_and_naive():
    torch.manual_seed(2)
    mk, qk, mv = torch.randn(2, 8, 30), torch.randn(2, 8, 7), torch.randn(2, 5, 30)
    dense_top = readout(affinity(mk, qk, top_k=4), mv)
    assert torch.allclose(top_k_readout(mk, mv, qk, 4), dense_top, atol=1e-5)
    # naive: per query position, softmax over its 4 nearest memory positions
    dist = ((mk.unsqueeze(3) - qk.unsqueeze(2)) ** 2).sum(1)
    for b in range(2):
        for j in range(7):
            idx = torch.argsort(dist[b, :, j])[:4]
            w = torch.softmax(-dist[b, idx, j] / math.sqrt(8), dim=0)
            assert torch.allclose(dense_top[b, :, j], (mv[b][:, idx] * w).sum(1), atol=1e-5)


@pytest.mark.parametrize("k", [30, 31, 100])
def test_top_k_equals_full_softmax_when_k_covers_memory(k):
    torch.manual_seed(3)
    mk, qk, mv = torch.randn(1, 8, 30), torch.randn(1, 8, 7), torch.randn(1, 5, 30)
    full = readout(affinity(mk, qk), mv)
    assert torch.allclose(read_memory(mk, mv, qk, top_k=k), full, atol=1e-6)
    assert torch.allclose(top_k_readout(mk, mv, qk, k), full, atol=1e-5)


def test_soft_aggregate_equals_stcn_formula():
    x = torch.linspace(-30, 30, 601)
    p = torch.sigmoid(x.double())
    q = torch.stack([1 - p, p]).clamp(1e-7, 1 - 1e-7)
    stcn = torch.softmax(torch.log(q / (1 - q)), dim=0)[1]
    assert torch.allclose(object_probability(x.double()), stcn, atol=1e-9)
    assert torch.allclose(torch.sigmoid(soft_aggregate(x)), object_probability(x))


def test_normalize_grayscale_repeats_then_normalises():
    g = torch.rand(2, 1, 4, 5)
    rgb = normalize_frames(g.repeat(1, 3, 1, 1))
    assert torch.allclose(normalize_frames(g), rgb)
    assert torch.allclose(rgb[:, 0], (g[:, 0] - 0.485) / 0.229)
    with pytest.raises(ValueError):
        normalize_frames(torch.rand(1, 2, 4, 4))


def test_training_wrapper_outputs_and_gradients():
    net = tiny().train()
    wrapper = ClipTrainingWrapper(net)
    frames = torch.rand(2, 3, 1, 32, 48)
    mask = (torch.rand(2, 1, 32, 48) > 0.5).float()
    out = wrapper(frames, mask)
    assert out["logits"].shape == (2, 2, 1, 32, 48) and out["probs"].shape == (2, 2, 1, 32, 48)
    assert out["keys"].shape == (2, 3, 8, 2, 3)
    assert torch.allclose(out["probs"], torch.sigmoid(out["logits"]))
    (out["logits"].mean() + out["keys"].mean()).backward()
    for prefix in ("key_encoder", "value_encoder", "key_proj", "key_comp", "decoder"):
        grads = [p.grad for n, p in net.named_parameters() if n.startswith(prefix)]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), prefix


def test_training_wrapper_grayscale_equals_repeated_rgb_and_uses_mask():
    wrapper = ClipTrainingWrapper(tiny()).eval()
    gray = torch.rand(1, 3, 1, 32, 32)
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    with torch.no_grad():
        a = wrapper(gray, mask)["logits"]
        b = wrapper(gray.repeat(1, 1, 3, 1, 1), mask)["logits"]
        c = wrapper(gray, 1 - mask)["logits"]
    assert torch.allclose(a, b, atol=1e-5)
    assert (a - c).abs().max() > 1e-5  # the reference mask reaches the prediction


def test_training_wrapper_bad_input():
    wrapper = ClipTrainingWrapper(tiny())
    with pytest.raises(InputError, match="multiples of 16"):
        wrapper(torch.rand(1, 3, 1, 30, 32), torch.zeros(1, 1, 30, 32))
    with pytest.raises(InputError, match=r"\(B, T, 1\|3, H, W\)"):
        wrapper(torch.rand(3, 1, 32, 32), torch.zeros(1, 1, 32, 32))
    with pytest.raises(InputError, match="first_mask"):
        wrapper(torch.rand(1, 3, 1, 32, 32), torch.zeros(1, 1, 16, 16))


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_propagation_net_traceable_and_odd_sizes():
    net = PropagationNet(tiny()).eval()
    x = torch.rand(2, 3, 32, 48)
    with torch.no_grad():
        y = net(x)
        traced = torch.jit.trace(net, x, check_trace=False)
        assert y.shape == (2, 1, 32, 48)
        assert torch.allclose(traced(x), y, atol=1e-6)
        assert net(torch.rand(1, 3, 37, 51)).shape == (1, 1, 37, 51)


def test_propagation_net_scriptable():
    net = PropagationNet(tiny(), top_k=3).eval()
    x = torch.rand(1, 3, 48, 32)
    with torch.no_grad():
        assert torch.allclose(torch.jit.script(net)(x), net(x), atol=1e-6)


# ---------------------------------------------------------------- load_pretrained


def _outputs(net: STCN) -> torch.Tensor:
    with torch.no_grad():
        return PropagationNet(net.eval())(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)))


def test_load_own_checkpoint_round_trip(tmp_path):
    src, dst = tiny(seed=1), tiny(seed=2)
    getattr(src, TRAINING_SIZE_KEY).copy_(torch.tensor([32, 48]))  # trained at 32x48: the file says so
    path = tmp_path / "own.pt"
    torch.save({"network": {f"module.{k}": v for k, v in src.state_dict().items()}, "epoch": 3}, path)
    report = load_pretrained(dst, path, strict=True)
    assert report.format == "stcn" and len(report.loaded) == len(src.state_dict())
    assert dst.trained_at() == (32, 48)
    assert not (report.missing or report.unexpected or report.mismatched or report.adapted)
    assert torch.equal(_outputs(src), _outputs(dst))


def test_load_four_channel_value_conv1_is_zero_padded(tmp_path):
    src, dst = tiny(seed=1), tiny(seed=2)
    sd = src.state_dict()
    sd["value_encoder.conv1.weight"] = sd["value_encoder.conv1.weight"][:, :4].clone()
    torch.save(sd, tmp_path / "so.pth")
    report = load_pretrained(dst, tmp_path / "so.pth")
    assert report.adapted == ["value_encoder.conv1.weight"]
    w = dst.value_encoder.conv1.weight
    assert torch.equal(w[:, :4], sd["value_encoder.conv1.weight"]) and torch.all(w[:, 4] == 0)


def _torchvision_names(encoder_sd: dict[str, torch.Tensor], first_stage: str) -> dict[str, torch.Tensor]:
    prefix = f"{first_stage}."
    out = {(f"layer1.{k[len(prefix):]}" if k.startswith(prefix) else k): v for k, v in encoder_sd.items()}
    out["layer4.0.conv1.weight"] = torch.randn(4, 4, 3, 3)
    out["fc.weight"], out["fc.bias"] = torch.randn(10, 4), torch.randn(10)
    return out


def test_load_torchvision_resnet_into_key_encoder(tmp_path):
    src, dst = tiny(seed=1), tiny(seed=2, value_width=4)  # the value encoder is narrower: no fit
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    ckpt = _torchvision_names(src.key_encoder.state_dict(), "res2")
    torch.save(ckpt, tmp_path / "resnet.pth")
    report = load_pretrained(dst, tmp_path / "resnet.pth")
    assert report.format == "imagenet"
    assert sorted(report.dropped) == ["fc.bias", "fc.weight", "layer4.0.conv1.weight"]
    for k, v in src.key_encoder.state_dict().items():
        assert torch.equal(dst.key_encoder.state_dict()[k], v)
    assert all(k.startswith("key_encoder.") for k in report.loaded)
    assert "decoder.pred.weight" in report.missing
    assert torch.equal(dst.state_dict()["decoder.pred.weight"], before["decoder.pred.weight"])
    # where the value encoder's ResNet-18 has the same width, it receives the weights too
    report = load_pretrained(tiny(seed=3), tmp_path / "resnet.pth")
    assert "value_encoder.layer3.1.conv2.weight" in report.loaded and "key_encoder.conv1.weight" in report.loaded


def _is_conv_bias(key: str) -> bool:
    module = key.rsplit(".", 1)[0]
    return key.endswith(".bias") and (module.split(".")[-1].startswith("conv") or module.endswith("downsample.0"))


def test_load_torchvision_resnet18_into_value_encoder(tmp_path):
    src, dst = tiny(seed=1, key_backbone="resnet50"), tiny(seed=2, key_backbone="resnet50")
    ckpt = {  # a torchvision ResNet-18: no fusion block, no convolution biases, RGB conv1
        k: v for k, v in src.value_encoder.state_dict().items() if not k.startswith("fuser") and not _is_conv_bias(k)
    }
    ckpt["conv1.weight"] = ckpt["conv1.weight"][:, :3].clone()
    report = load_pretrained(dst, _torchvision_names(ckpt, "layer1"))
    assert "value_encoder.conv1.weight" in report.adapted
    assert torch.all(dst.value_encoder.conv1.weight[:, 3:] == 0)
    assert torch.equal(dst.value_encoder.layer2[0].conv1.weight, src.value_encoder.layer2[0].conv1.weight)
    assert "value_encoder.layer1.0.conv1.bias" in report.missing
    assert not any(k.startswith("key_encoder.") for k in report.loaded)


def test_mismatch_report_lists_keys_by_name():
    src, dst = tiny(seed=1), tiny(seed=2)
    sd = src.state_dict()
    sd["decoder.pred.weight"] = torch.randn(1, 3, 3, 3)
    sd["extra.weight"] = torch.randn(2)
    del sd["key_comp.bias"]
    report = load_pretrained(dst, sd)
    assert report.mismatched == [("decoder.pred.weight", (1, 3, 3, 3), tuple(dst.decoder.pred.weight.shape))]
    assert report.unexpected == ["extra.weight"]
    assert report.missing == [TRAINING_SIZE_KEY, "key_comp.bias", "decoder.pred.weight"]  # src records no size
    with pytest.raises(InputError, match="strict"):
        load_pretrained(dst, sd, strict=True)


def test_checkpoint_for_another_architecture_raises():
    other = tiny(seed=1, key_width=16, value_width=16, key_dim=16, value_dim=32, decoder_dims=(32, 16, 16))
    with pytest.raises(InputError, match=r"does not fit.*mismatched key\(s\): .*key_encoder"):
        load_pretrained(tiny(), other.state_dict())
    with pytest.raises(InputError, match="unexpected key"):
        load_pretrained(tiny(), {"backbone.stem.weight": torch.randn(3, 3)})


def test_not_a_checkpoint(tmp_path):
    bad = tmp_path / "notes.pth"
    bad.write_text("this is not a checkpoint\n")
    with pytest.raises(InputError, match=r"notes.pth: not a PyTorch checkpoint"):
        load_pretrained(tiny(), bad)
    with pytest.raises(InputError, match="not found"):
        load_pretrained(tiny(), tmp_path / "missing.pth")
    torch.save({"epoch": 3}, tmp_path / "meta.pth")
    with pytest.raises(InputError, match="not a PyTorch checkpoint"):
        load_pretrained(tiny(), tmp_path / "meta.pth")


def test_seeded_state_dict_is_order_independent():
    shapes = [("b.weight", (4, 3)), ("a.bn.running_var", (4,)), ("a.bn.num_batches_tracked", ())]
    one = seeded_state_dict(shapes, seed=5)
    two = seeded_state_dict(list(reversed(shapes)), seed=5)
    assert all(torch.equal(one[k], two[k]) for k in one)
    assert one["a.bn.num_batches_tracked"].dtype == torch.int64
    assert not torch.equal(one["b.weight"], seeded_state_dict(shapes, seed=6)["b.weight"])
    assert F.relu(-one["a.bn.running_var"]).sum() == 0
