"""Time the evaluation of a test set: 20 videos of 100 frames at 128 x 128 (by default).

Ground truth is a drifting, breathing ellipse; the prediction is the ground truth moved
and resized a little, with a few missed frames and false positives, so every code path
(Hausdorff on both masks present, the empty-frame penalties) is exercised. Only
``evaluate_video`` and ``summarise`` are timed, not the making of the masks::

    .venv/bin/python scripts/bench_metrics.py [--videos 20] [--frames 100] [--size 128]
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np

from stbv_monai.metrics import evaluate_video, summarise
from stbv_monai.metrics.report import format_table

logger = logging.getLogger("bench_metrics")


def _ellipses(centres: np.ndarray, radii: np.ndarray, size: int) -> np.ndarray:
    """``(T, size, size)`` bool masks of ellipses with per-frame centre ``(T, 2)`` and radii ``(T, 2)``."""
    yy, xx = np.mgrid[:size, :size]
    dy = (yy[None] - centres[:, 0, None, None]) / radii[:, 0, None, None]
    dx = (xx[None] - centres[:, 1, None, None]) / radii[:, 1, None, None]
    return dy**2 + dx**2 <= 1


def make_video(rng: np.random.Generator, frames: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A random-ish (prediction, ground truth) pair of mask videos."""
    t = np.arange(frames)[:, None]
    centres = size * (0.5 + 0.15 * np.sin(t / 15 + rng.uniform(0, 6, size=2)))
    radii = size * (0.12 + 0.03 * np.sin(t / 10 + rng.uniform(0, 6, size=2)))
    gt = _ellipses(centres, radii, size)
    gt[rng.random(frames) < 0.03] = False  # lesion out of the plane now and then
    jitter = rng.normal(0, size * 0.02, size=(frames, 2))
    pred = _ellipses(centres + jitter, radii * rng.uniform(0.85, 1.15, size=(frames, 2)), size)
    pred[rng.random(frames) < 0.03] = False  # missed frames
    fp = rng.random(frames) < 0.03
    pred[fp, : size // 10, : size // 10] = True  # false positives in a corner
    return pred, gt


def main(argv: list[str] | None = None) -> float:
    """Run the benchmark; returns the seconds spent evaluating."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=20)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rng = np.random.default_rng(args.seed)
    videos = [make_video(rng, args.frames, args.size) for _ in range(args.videos)]
    start = time.perf_counter()
    results = []
    for i, (pred, gt) in enumerate(videos):
        refs = sorted(rng.choice(args.frames, size=2, replace=False).tolist())
        results.append(evaluate_video(pred, gt, refs, spacing=(0.1, 0.1), name=f"video{i:02d}"))
    summary = summarise(results)
    seconds = time.perf_counter() - start
    logger.info("%s", format_table(summary))
    logger.info("evaluated %d videos x %d frames at %dx%d in %.2f s (%.2f ms/frame)", args.videos, args.frames,
                args.size, args.size, seconds, 1e3 * seconds / (args.videos * args.frames))
    return seconds


if __name__ == "__main__":
    main()
