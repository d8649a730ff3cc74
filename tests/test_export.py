"""MONAI bundle export of the network: ``verify_net_in_out`` and ``ckpt_export`` on ``network_def``.

MONAI's python API is called in-process (the same functions ``python -m monai.bundle
verify_net_in_out|ckpt_export`` run), which spares a 10 s bundle start per call.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from monai.bundle import ckpt_export, verify_net_in_out
from monai.data import load_net_with_metadata

from stbv_monai import BUNDLE_ROOT
from stbv_monai.networks import PropagationNet, build_network

CONFIGS = BUNDLE_ROOT / "configs"
META = str(CONFIGS / "metadata.json")
INFERENCE = str(CONFIGS / "inference.yaml")


def query_input(seed: int = 0, size: int = 64) -> torch.Tensor:
    """``(1, 3, size, size)``: [reference frame, binary reference mask, query frame]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, size, size, generator=g)
    x[:, 1] = (x[:, 1] > 0.5).float()
    return x


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, PropagationNet]:
    """A checkpoint in the bundle's format (``PropagationNet`` state dict) and the eager net it came from."""
    torch.manual_seed(1)
    net = PropagationNet(build_network("stcn_small")).eval()
    path = tmp_path_factory.mktemp("export") / "model.pt"
    torch.save(net.state_dict(), path)
    return path, net


@pytest.mark.parametrize("n", [1, 4], ids=["16px", "64px"])
def test_verify_net_in_out_passes(n):
    """Input (1, 3, 16n, 16n) from metadata.json gives the declared (1, 1, 16n, 16n) output."""
    verify_net_in_out(net_id="network_def", meta_file=META, config_file=INFERENCE, device="cpu", n=n)


def test_ckpt_export_matches_eager_network_at_any_size(tmp_path, trained):
    """The default (scripted) export loads with torch.jit.load and equals the eager net with the
    checkpoint's weights, at 64 x 64 and at a size that is not a multiple of 16. (A traced export,
    ``--use_trace true``, is fixed to the size it was traced at.)"""
    ckpt, eager = trained
    ts = tmp_path / "model.ts"
    ckpt_export(net_id="network_def", filepath=str(ts), ckpt_file=str(ckpt), meta_file=META, config_file=INFERENCE)
    exported = torch.jit.load(str(ts), map_location="cpu").eval()
    for x in (query_input(), query_input(seed=3, size=72)[..., :56]):
        with torch.no_grad():
            expected, got = eager(x), exported(x)
        assert got.shape == expected.shape == (1, 1, *x.shape[-2:])
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    # the weights came from the checkpoint, not from network_def's fresh initialisation
    torch.manual_seed(2)
    with torch.no_grad():
        other = PropagationNet(build_network("stcn_small")).eval()(x)
    assert not torch.allclose(other, expected, atol=1e-3)
    _, meta, _ = load_net_with_metadata(str(ts))
    assert meta["network_data_format"] == json.loads(Path(META).read_text())["network_data_format"]
