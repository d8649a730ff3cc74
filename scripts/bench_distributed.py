"""Teacher-stage iteration rate with 1 and 2 processes on this machine, and how closely the loss curves agree.

Each setup runs the bundle's teacher trainer (``train.yaml``, the ``cpu`` preset by default) in
fresh processes for ``--iterations`` steps at the same global batch, without validation::

    .venv/bin/python scripts/bench_distributed.py [--iterations 20] [--warmup 3] [--dataset_dir DIR]

Setups: ``single`` (plain ``python``, ``train.yaml``), ``torchrun-1`` and ``torchrun-2`` (one
or two processes with ``multi_gpu_train.yaml`` merged; Gloo on CPU, NCCL on GPUs). The two
torchrun setups train on the same clips at every step (shard sampler, per-draw seeding), so
their loss curves differ only by what is per process (batch-norm statistics, loss
bootstrapping) and floating-point order; ``single`` draws other clips (its own sampler).
The rate counts the steps after ``--warmup``; a step is one global batch.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "bundle" / "configs"
SETUPS = {  # name: (launcher, processes, overlay)
    "single": ("python", 1, False),
    "torchrun-1": ("torchrun", 1, True),
    "torchrun-2": ("torchrun", 2, True),
}

logger = logging.getLogger("bench_distributed")


def worker(args: argparse.Namespace) -> None:
    """Build and run the teacher trainer in this process (one of ``--processes``); rank 0 writes ``--out``."""
    import torch
    from ignite.engine import Events
    from monai.bundle import ConfigParser

    files = [str(CONFIGS / "train.yaml"), *args.config]
    if args.overlay:
        files.append(str(CONFIGS / "multi_gpu_train.yaml"))
    parser = ConfigParser()
    parser.read_config(files)
    overrides = {"output_dir": args.output_dir, "teacher_stage#iterations": args.iterations,
                 "val_entries": [], "checkpoint_interval": 10**9}
    if args.dataset_dir:
        overrides["dataset_dir"] = args.dataset_dir
    parser.update(overrides)
    parser.get_parsed_content("initialize")
    trainer = parser.get_parsed_content("teacher_stage").trainer
    times: list[float] = []
    losses: list[float] = []

    def record(engine) -> None:  # after ReduceLosses: the all-process mean
        times.append(time.perf_counter())
        losses.append(float(engine.state.output["loss"]))

    trainer.add_event_handler(Events.ITERATION_COMPLETED, record)
    trainer.run()
    from stbv_monai.engines.distributed import get_rank, get_world_size

    if get_rank() == 0:
        steps = len(times) - args.warmup
        rate = steps / (times[-1] - times[args.warmup - 1]) if steps > 0 and args.warmup > 0 else float("nan")
        Path(args.out).write_text(json.dumps({
            "processes": get_world_size(), "threads": torch.get_num_threads(),
            "global_batch": parser.get_parsed_content("batch_size"),
            "per_process_batch": trainer.data_loader.batch_size, "rate": rate, "losses": losses,
        }))
    if "finalize" in parser:
        parser.get_parsed_content("finalize")


def run_setup(name: str, args: argparse.Namespace, tmp: Path) -> dict:
    launcher, processes, overlay = SETUPS[name]
    out = tmp / f"{name}.json"
    cmd = [sys.executable] if launcher == "python" else [
        str(Path(sys.executable).with_name("torchrun")), "--standalone", "--nnodes=1", f"--nproc_per_node={processes}"]
    cmd += [__file__, "--worker", "--out", str(out), "--output_dir", str(tmp / name),
            "--iterations", str(args.iterations), "--warmup", str(args.warmup)] + (["--overlay"] if overlay else [])
    cmd += [f"--config={c}" for c in args.config] + (["--dataset_dir", args.dataset_dir] if args.dataset_dir else [])
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{name} failed:\n{(proc.stdout + proc.stderr)[-4000:]}")
    result = json.loads(out.read_text())
    result["wall"] = time.perf_counter() - start
    return result


def compare(a: list[float], b: list[float]) -> str:
    """Per-step loss agreement of two curves of the same length."""
    a_, b_ = np.asarray(a), np.asarray(b)
    diff = np.abs(a_ - b_)
    rel = diff / np.maximum(np.abs(a_), 1e-12)
    half = len(a_) // 2
    return (f"|Δloss| mean {diff.mean():.4f} max {diff.max():.4f} "
            f"(relative: mean {rel.mean():.1%}, max {rel.max():.1%}); "
            f"mean loss of the last {len(a_) - half} steps {a_[half:].mean():.4f} vs {b_[half:].mean():.4f}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3, help="steps left out of the rate")
    parser.add_argument("--dataset_dir", default=None, help="default: train.yaml's (data/synthetic)")
    parser.add_argument("--config", action="append", default=[], help="extra overlay after train.yaml (e.g. a preset)")
    parser.add_argument("--setups", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--overlay", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--output_dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return {}
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.setups:
            results[name] = run_setup(name, args, Path(tmp))
            r = results[name]
            logger.info("%-11s %d process(es) x %d thread(s), batch %d per process (%d global): %.3f it/s, "
                        "%.2f clips/s (run with start-up: %.0f s)", name, r["processes"], r["threads"],
                        r["per_process_batch"], r["global_batch"], r["rate"], r["rate"] * r["global_batch"], r["wall"])
    if "single" in results and "torchrun-2" in results:
        logger.info("speed-up torchrun-2 / single: %.2fx", results["torchrun-2"]["rate"] / results["single"]["rate"])
    if "torchrun-1" in results and "torchrun-2" in results:
        logger.info("loss, torchrun-1 vs torchrun-2 (same clips): %s",
                    compare(results["torchrun-1"]["losses"], results["torchrun-2"]["losses"]))
    if "single" in results and "torchrun-2" in results:
        logger.info("loss, single vs torchrun-2 (other clips): %s",
                    compare(results["single"]["losses"], results["torchrun-2"]["losses"]))
    for name, r in results.items():
        logger.info("%s losses: %s", name, " ".join(f"{v:.3f}" for v in r["losses"]))
    return results


if __name__ == "__main__":
    main()
