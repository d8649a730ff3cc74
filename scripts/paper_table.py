"""Reproduce the layout of the paper's Table 1/2 on a dataset: variants x seeds, mean ± std.

Each (variant, seed) is one `python -m monai.bundle run training` with the variant's overlay,
into ``OUT/<variant>/seed<k>``; a run whose ``evaluation/summary.json`` exists is not run again,
so the script resumes where it stopped. Every training logs to one MLflow store
(``sqlite:///OUT/mlruns.db`` by default), so ``scripts/compare_runs.py --tracking-uri`` gives
the same table from MLflow. The ``stcs`` row needs no training of its own: it is the
teacher of the ``ours`` run (stage 1 with STCS), evaluated on the test split.

    python scripts/paper_table.py --variants vanilla ours full_supervision --seeds 0 1 2 \
        --out outputs/table [--dataset_dir DIR] [--preset configs/presets/cpu.yaml]
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "bundle" / "configs" / "train.yaml"
COLUMNS = (("J&F", "J&F"), ("J", "J"), ("F", "F"), ("DSC", "Dice"), ("HD95", "HD95"),
           ("J&F first frame", "first_frame.J&F"), ("DSC first frame", "first_frame.Dice"))
LABELLED = {"full_supervision": "100%"}

logger = logging.getLogger("paper_table")


def _bundle(run_id: str, configs: list[Path], out: Path, dataset_dir: str | None, seed: int, *extra: str,
            tracking_uri: str | None = None) -> None:
    files = "[" + ",".join(f"'{c}'" for c in configs) + "]"
    cmd = [sys.executable, "-m", "monai.bundle", "run", run_id, "--config_file", files,
           "--output_dir", str(out), "--seed", str(seed), *extra]
    if tracking_uri:
        cmd += ["--tracking_uri", tracking_uri]
    if dataset_dir:
        cmd += ["--dataset_dir", dataset_dir]
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"{run_id}.log", "w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    if proc.returncode:
        raise SystemExit(f"error: {out / (run_id + '.log')}: run failed (exit {proc.returncode})")


def run_variant(variant: str, seed: int, args: argparse.Namespace) -> dict:
    """Train + evaluate one (variant, seed) unless already done; return its summary."""
    if variant == "stcs":  # the STCS teacher of the `ours` run, evaluated
        run_variant("ours", seed, args)
        base = Path(args.out) / "ours" / f"seed{seed}"
        summary = base / "evaluation_stcs" / "summary.json"
        if not summary.is_file():
            _bundle("evaluate", [TRAIN, *args.preset, ROOT / "configs/variants/stcs.yaml"], base, args.dataset_dir,
                    seed, "--evaluate_stage#dir", str(summary.parent), tracking_uri=args.tracking_uri)
        return json.loads(summary.read_text())
    out = Path(args.out) / variant / f"seed{seed}"
    summary = out / "evaluation" / "summary.json"
    if not summary.is_file():
        start = time.time()
        _bundle("training", [TRAIN, *args.preset, ROOT / "configs" / "variants" / f"{variant}.yaml"], out,
                args.dataset_dir, seed, tracking_uri=args.tracking_uri)
        logger.info("%s seed %d: %.0f s", variant, seed, time.time() - start)
    return json.loads(summary.read_text())


def _value(summary: dict, key: str) -> float:
    """``summary[key]``; ``first_frame.J&F`` reads the first-frame section (NaN for older runs without it)."""
    for part in key.split("."):
        summary = summary.get(part, float("nan")) if isinstance(summary, dict) else float("nan")
    return summary


def table(results: dict[str, list[dict]], labelled: str) -> str:
    """Markdown rows: variant, labelled fraction, mean ± std over seeds of J&F, J, F, DSC, HD95."""
    head = "| method | labelled data | seeds | " + " | ".join(c for c, _ in COLUMNS) + " |"
    lines = [head, "|" + " --- |" * (3 + len(COLUMNS))]
    for variant, runs in results.items():
        cells = []
        for name, key in COLUMNS:
            vals = np.array([_value(r, key) for r in runs], dtype=float) * (1 if key == "HD95" else 100)
            cells.append(f"{vals.mean():.1f} ± {vals.std(ddof=1) if len(vals) > 1 else 0:.1f}")
        lines.append(f"| {variant} | {LABELLED.get(variant, labelled)} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=["vanilla", "stcs", "ours", "full_supervision"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", default=str(ROOT / "outputs" / "table"))
    parser.add_argument("--dataset_dir", default=None)
    parser.add_argument("--preset", nargs="*", type=Path, default=[], help="extra overlay files (e.g. a preset)")
    parser.add_argument("--labelled", default="2 frames/video", help="label fraction shown for two-shot rows")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow store every training logs to (default: sqlite:///OUT/mlruns.db), "
                             "read back by scripts/compare_runs.py --tracking-uri")
    args = parser.parse_args()
    args.tracking_uri = args.tracking_uri or f"sqlite:///{Path(args.out).resolve()}/mlruns.db"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    results = {v: [run_variant(v, s, args) for s in args.seeds] for v in args.variants}
    text = table(results, args.labelled)
    Path(args.out, "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
