"""Where does a model lose a video? J&F of each frame against its distance to the nearest reference.

The paper's argument for the student is that it fixes its teacher far from the labelled frames.
This reads the per-frame reports of evaluations (``metrics_per_frame.csv``, written by the
evaluate stage) of several models on the same videos and plots mean J&F per distance bin, one
line per model, with the per-video comparison of the first two models and, given a stage-2
``manifest.json``, the pseudo-labels' J&F per training video::

    python scripts/frame_distance.py --eval teacher=outputs/ours/evaluation_stcs \
        --eval student=outputs/ours/evaluation [--manifest outputs/ours/pseudo_labels/manifest.json] \
        [--bin 5] --out docs/frame_distance.png

Several folders per model (``--eval student=a,b,c``, e.g. one per seed) are pooled. Writes the
plot, ``<out>.csv`` (model, distance bin, frames, mean J&F) and prints a Markdown summary.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from stbv_monai.errors import InputError, install_excepthook  # noqa: E402


def read_frames(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """``{video: [(distance to the nearest reference, J&F), ...]}`` over the evaluated frames of one report."""
    path = folder / "metrics_per_frame.csv"
    if not path.is_file():
        raise InputError(path, "not found: give an evaluation folder (it holds metrics_per_frame.csv)")
    rows: dict[str, list[dict]] = defaultdict(list)
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            rows[row["video"]].append(row)
    out = {}
    for video, frames in rows.items():
        refs = [int(r["frame"]) for r in frames if r["status"] == "reference"]
        if not refs:
            raise InputError(path, f"video {video} has no reference frame")
        out[video] = [(min(abs(int(r["frame"]) - t) for t in refs), float(r["jf"]))
                      for r in frames if r["status"] == "evaluated"]
    return out


def by_distance(videos: list[dict[str, list[tuple[int, float]]]], width: int) -> dict[int, list[float]]:
    """J&F values grouped by distance bin (bin start), pooled over videos and reports."""
    bins: dict[int, list[float]] = defaultdict(list)
    for report in videos:
        for frames in report.values():
            for d, jf in frames:
                bins[(d - 1) // width * width + 1 if d > 0 else 0].append(jf)
    return dict(sorted(bins.items()))


def video_means(reports: list[dict[str, list[tuple[int, float]]]]) -> dict[str, float]:
    """Mean J&F per video (reports of several seeds pooled per video)."""
    pooled: dict[str, list[float]] = defaultdict(list)
    for report in reports:
        for video, frames in report.items():
            pooled[video].extend(jf for _, jf in frames)
    return {v: float(np.mean(x)) for v, x in pooled.items()}


def plot(curves: dict[str, dict[int, list[float]]], width: int, out: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for name, bins in curves.items():
        x = [b + (width - 1) / 2 if b else 0 for b in bins]
        y = [100 * np.mean(v) for v in bins.values()]
        err = [100 * np.std(v) / np.sqrt(len(v)) for v in bins.values()]
        ax.errorbar(x, y, yerr=err, marker="o", capsize=2, label=name)
    ax.set(xlabel="distance to the nearest reference frame (frames)", ylabel="mean J&F (%)",
           title="J&F per frame against distance to the nearest reference")
    ax.grid(alpha=0.3)
    ax.legend()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)


def markdown(curves: dict[str, dict[int, list[float]]], width: int, per_video: dict[str, dict[str, float]],
             pseudo: dict[str, float] | None) -> str:
    names = list(curves)
    bins = sorted({b for c in curves.values() for b in c})
    label = {b: "0" if b == 0 else f"{b}-{b + width - 1}" for b in bins}
    lines = ["| distance | " + " | ".join(f"{n} J&F (frames)" for n in names) + " |", "|" + " --- |" * (1 + len(names))]
    for b in bins:
        cells = [f"{100 * np.mean(curves[n][b]):.1f} ({len(curves[n][b])})" if b in curves[n] else "–" for n in names]
        lines.append(f"| {label[b]} | " + " | ".join(cells) + " |")
    if len(names) >= 2:
        a, b = names[:2]
        common = sorted(set(per_video[a]) & set(per_video[b]))
        diff = np.array([per_video[b][v] - per_video[a][v] for v in common]) * 100
        lines.append(f"\n{b} − {a} per test video (J&F points): mean {diff.mean():+.1f}, {int((diff > 0).sum())} of "
                     f"{len(diff)} videos better, {int((diff < -1).sum())} worse by more than 1 point; "
                     f"worst {diff.min():+.1f}, best {diff.max():+.1f}.")
    if pseudo:
        vals = np.array(list(pseudo.values())) * 100
        lines.append(f"\nPseudo-labels per training video (J&F): mean {vals.mean():.1f}, median {np.median(vals):.1f}, "
                     f"min {vals.min():.1f}, max {vals.max():.1f} over {len(vals)} videos.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    install_excepthook()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--eval", action="append", required=True, metavar="NAME=DIR[,DIR...]",
                        help="an evaluation folder per model (comma-separated folders are pooled)")
    parser.add_argument("--manifest", type=Path, action="append", default=[],
                        help="stage-2 manifest.json(s) with per-video pseudo-label scores")
    parser.add_argument("--bin", type=int, default=5, help="distance bin width in frames (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "frame_distance.png")
    args = parser.parse_args(argv)
    curves, per_video = {}, {}
    for spec in args.eval:
        name, _, folders = spec.partition("=")
        if not folders:
            raise InputError(f"--eval {spec}", "expected NAME=DIR[,DIR...]")
        reports = [read_frames(Path(f)) for f in folders.split(",")]
        curves[name], per_video[name] = by_distance(reports, args.bin), video_means(reports)
    pseudo = {}
    for i, path in enumerate(args.manifest):
        for video in json.loads(path.read_text())["videos"]:
            if "score" in video:
                pseudo[f"{i}:{video['image']}"] = float(video["score"]["JF"])
    plot(curves, args.bin, args.out)
    with open(args.out.with_suffix(".csv"), "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["model", "distance_from", "frames", "mean_jf"])
        for name, bins in curves.items():
            writer.writerows([name, b, len(v), f"{np.mean(v):.5f}"] for b, v in bins.items())
    print(markdown(curves, args.bin, per_video, pseudo or None), end="")


if __name__ == "__main__":
    main()
