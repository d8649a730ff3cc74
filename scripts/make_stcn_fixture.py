"""Build ``tests/fixtures/stcn_reference.pt``: STCN's own inference output on a tiny video.

The fixture lets ``tests/test_inference.py`` check that our network + inference core
reproduce STCN's ``InferenceCore`` (top-k 20, mem_every 5, soft aggregation) to 1e-4,
without shipping STCN's code or any weights.

How the fixture is made (all on CPU):

1. STCN's code (github.com/hkchengrex/STCN, commit eb83102e, a checkout at ``--stcn-dir``,
   never part of this repository) is imported from that folder with runtime shims only:
   ``torchvision.models.resnet50`` builds without downloading weights, ``torch.utils.model_zoo.load_url``
   returns an empty dict (their ResNet-18 surgery then loads nothing), ``Tensor.cuda`` returns
   the tensor itself and ``torch.zeros(device="cuda")`` allocates on the CPU. Their
   ``model/eval_network.STCN`` is built (paper size, ResNet-50 keys, 54 M parameters).
2. Weights: the ``(name, shape)`` list of their state dict, with ``value_encoder.conv1.weight``
   given 4 input channels (a single-object, stage-0 style checkpoint), goes through
   ``stbv_monai.networks.synthetic_weights.seeded_state_dict(shapes, seed, gain)``. The
   4-channel ``conv1`` is padded with a zero fifth channel exactly as their ``eval_davis.py``
   does, and the result is loaded with ``load_state_dict(strict=True)``; the model is put in
   ``eval()`` mode.
3. Video: ``T`` frames of ``H x W`` (default 8 x 75 x 90: padded to 80 x 96, i.e. 5 x 6 = 30 key
   positions per frame, so top-k 20 is a real selection once a second memory frame is in),
   from :func:`synthetic_clip`: a smooth random texture with speckle and a dark ellipse
   drifting right and down, quantised to uint8. The reference mask is the ellipse in frame 0.
4. STCN's pipeline: grayscale frames in [0, 1] repeated to 3 channels and normalised with their
   ``dataset.range_transform.im_normalization`` (ImageNet mean/std), shape ``(1, T, 3, H, W)``;
   ``InferenceCore(net, rgb, num_objects=1, top_k=20, mem_every=5)``;
   ``interact(mask[None, None], 0, T)``; the output is ``unpad(core.prob[:, t], core.pad)[1, 0]``
   (object channel after soft aggregation with background) for every ``t``.
5. Saved with ``torch.save``: ``frames`` (uint8 ``(T, H, W)``), ``mask`` (uint8 ``(H, W)``),
   ``probs`` (float32 ``(T, H, W)``), ``seed``, ``gain``, ``param_names`` / ``param_shapes``
   (their state dict's names and shapes, 4-channel ``conv1``), ``top_k``, ``mem_every``, the STCN commit.

The test regenerates the weights with ``seeded_state_dict`` from the stored names, shapes,
seed and gain, loads them into our ``STCN()`` through ``load_pretrained`` (STCN key names and the
4 -> 5 channel padding) and compares ``propagate`` with ``probs``.

Run (needs torchvision, which is not a project dependency, and STCN's code)::

    git clone https://github.com/hkchengrex/STCN /tmp/STCN   # commit eb83102e
    .venv/bin/python scripts/make_stcn_fixture.py --stcn-dir /tmp/STCN
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from stbv_monai.networks.synthetic_weights import seeded_state_dict  # noqa: E402

logger = logging.getLogger("make_stcn_fixture")

STCN_COMMIT = "eb83102e1957d9f21fb268ab202dad72ef06a1b0"
CONV1 = "value_encoder.conv1.weight"


def synthetic_clip(num_frames: int, height: int, width: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A tiny ultrasound-like clip: smooth texture + speckle + a dark ellipse that drifts.

    Returns:
        ``frames`` uint8 ``(T, H, W)`` and the frame-0 ellipse ``mask`` uint8 ``(H, W)``.
    """
    g = torch.Generator().manual_seed(seed + 1)
    coarse = torch.rand(1, 1, max(height // 8, 2), max(width // 8, 2), generator=g)
    texture = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)[0, 0]
    yy, xx = torch.meshgrid(torch.arange(height).float(), torch.arange(width).float(), indexing="ij")
    frames, mask0 = [], None
    for t in range(num_frames):
        cy, cx = 0.4 * height + 1.5 * t, 0.35 * width + 2.0 * t
        inside = ((yy - cy) / (0.18 * height)) ** 2 + ((xx - cx) / (0.22 * width)) ** 2 <= 1.0
        speckle = 0.15 * torch.rand(height, width, generator=g)
        img = 0.3 + 0.5 * texture + speckle - 0.45 * inside.float()
        frames.append((img.clamp(0, 1) * 255).round().to(torch.uint8))
        mask0 = inside.to(torch.uint8) if mask0 is None else mask0
    return torch.stack(frames), mask0


def install_cpu_shims() -> None:
    """Let STCN's CUDA-only, weight-downloading code run offline on the CPU (this process only)."""
    import torch.utils.model_zoo as model_zoo
    import torchvision.models as tv_models

    tv_resnet50 = tv_models.resnet50
    tv_models.resnet50 = lambda pretrained=False, **kw: tv_resnet50(weights=None)
    model_zoo.load_url = lambda *args, **kwargs: {}
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    zeros = torch.zeros

    def cpu_zeros(*args, **kwargs):
        if str(kwargs.get("device", "")).startswith("cuda"):
            kwargs["device"] = "cpu"
        return zeros(*args, **kwargs)

    torch.zeros = cpu_zeros


def build_stcn(stcn_dir: Path, seed: int, gain: float) -> tuple[torch.nn.Module, list[tuple[str, list[int]]]]:
    """STCN's eval network with seeded weights; returns it and the (name, shape) list used."""
    from model.eval_network import STCN  # their code, from --stcn-dir

    net = STCN()
    shapes = [(k, list(v.shape)) for k, v in net.state_dict().items()]
    shapes = [(k, [s[0], 4, *s[2:]] if k == CONV1 else s) for k, s in shapes]
    weights = seeded_state_dict(shapes, seed, gain)
    # eval_davis.py: a 4-channel value-encoder conv1 gets a zero fifth channel.
    c = weights[CONV1]
    weights[CONV1] = torch.cat([c, torch.zeros(c.shape[0], 1, *c.shape[2:])], dim=1)
    net.load_state_dict(weights, strict=True)
    return net.eval(), shapes


def run_stcn(
    net: torch.nn.Module, frames: torch.Tensor, mask: torch.Tensor, top_k: int, mem_every: int
) -> torch.Tensor:
    """STCN's InferenceCore on grayscale uint8 frames; returns object probabilities ``(T, H, W)``."""
    from dataset.range_transform import im_normalization
    from inference_core import InferenceCore
    from util.tensor_util import unpad

    num_frames = frames.shape[0]
    gray = frames.float() / 255.0
    rgb = torch.stack([im_normalization(g[None].repeat(3, 1, 1)) for g in gray])[None]
    with torch.no_grad():
        core = InferenceCore(net, rgb, 1, top_k=top_k, mem_every=mem_every)
        core.interact(mask.float()[None, None], 0, num_frames)
        probs = [unpad(core.prob[:, t], core.pad)[1, 0] for t in range(num_frames)]
    return torch.stack(probs).float()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stcn-dir", type=Path, required=True, help="checkout of hkchengrex/STCN")
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures" / "stcn_reference.pt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gain", type=float, default=1.0)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--height", type=int, default=75)
    parser.add_argument("--width", type=int, default=90)
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--mem-every", type=int, default=5)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")

    install_cpu_shims()
    sys.path.insert(0, str(args.stcn_dir.resolve()))
    torch.manual_seed(args.seed)
    net, shapes = build_stcn(args.stcn_dir, args.seed, args.gain)
    frames, mask = synthetic_clip(args.frames, args.height, args.width, args.seed)
    probs = run_stcn(net, frames, mask, args.top_k, args.mem_every)
    if not torch.isfinite(probs).all():
        raise SystemExit("STCN produced non-finite probabilities; try another --gain")
    fixture = {
        "frames": frames, "mask": mask, "probs": probs, "seed": args.seed, "gain": args.gain,
        "param_names": [k for k, _ in shapes], "param_shapes": [s for _, s in shapes],
        "top_k": args.top_k, "mem_every": args.mem_every, "stcn_commit": STCN_COMMIT,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(fixture, args.out)
    quantiles = torch.quantile(probs[1:].flatten(), torch.tensor([0.01, 0.5, 0.99])).tolist()
    logger.info("wrote %s: probs of frames 1.. quantiles 1/50/99%% = %s", args.out, [round(q, 4) for q in quantiles])
    logger.info("per-frame mean prob: %s", [round(float(p.mean()), 4) for p in probs])


if __name__ == "__main__":
    main()
