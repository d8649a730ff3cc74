"""Training throughput per preset: iterations/s and clips/s of the real ClipTrainer.

    python scripts/bench_training.py [--presets tiny cpu paper] [--iterations 20] [--device cpu] [--threads N]

Each preset's network, clip size, batch and STCS setting are taken from the bundle config with
its overlay; the data are drifting-disc videos made in a temporary folder. The first iterations
(dataset caching, allocator warm-up) are excluded from the rate.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
from ignite.engine import Events
from monai.bundle import ConfigParser

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import write_disc_dataset  # noqa: E402  (the test suite's tiny dataset writer)

from stbv_monai.data import load_datalist  # noqa: E402
from stbv_monai.data.loaders import clip_loader  # noqa: E402
from stbv_monai.engines import ClipTrainer  # noqa: E402
from stbv_monai.losses import SegmentationLoss, STCSLoss  # noqa: E402
from stbv_monai.networks import ClipTrainingWrapper, build_network  # noqa: E402
from stbv_monai.transforms import clip_training_transforms  # noqa: E402


def preset_settings(name: str) -> dict:
    files = [str(ROOT / "bundle/configs/train.yaml")]
    if name != "cpu":
        files.append(str(ROOT / f"configs/presets/{name}.yaml"))
    cfg = ConfigParser()
    cfg.read_config(files)
    size = cfg["spatial_size"]
    return {"network": cfg["teacher_network"], "size": size[0], "batch": cfg["batch_size"], "lr": cfg["lr"]}


def measure(name: str, iterations: int, warmup: int, device: torch.device, data: Path) -> dict:
    s = preset_settings(name)
    entries = load_datalist(data, "training")
    net = ClipTrainingWrapper(build_network(s["network"])).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=s["lr"])
    loader = clip_loader(entries, clip_training_transforms(s["size"], mode="window", stcs=True, sda=True), s["batch"])
    trainer = ClipTrainer(device=device, max_epochs=1, epoch_length=warmup + iterations, train_data_loader=loader,
                          network=net, optimizer=opt, seg_loss=SegmentationLoss(), stcs_loss=STCSLoss(0.1))
    marks: dict[str, float] = {}
    trainer.add_event_handler(Events.ITERATION_COMPLETED(once=warmup), lambda e: marks.setdefault("t0", time.time()))
    trainer.run()
    rate = iterations / (time.time() - marks["t0"])
    return {"preset": name, **s, "it_per_s": rate, "clips_per_s": rate * s["batch"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["tiny", "cpu"])
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, device {args.device}")
    print("| preset | network | clip size | batch | iterations/s | clips/s |\n| --- | --- | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.presets:
            size = preset_settings(name)["size"]
            data = write_disc_dataset(Path(tmp) / name, n_videos=4, t=12, size=size)
            r = measure(name, args.iterations, args.warmup, torch.device(args.device), data)
            print(f"| {r['preset']} | {r['network']} | {r['size']} | {r['batch']} | {r['it_per_s']:.2f} | "
                  f"{r['clips_per_s']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
