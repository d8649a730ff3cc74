"""The evaluate workflow as users run it: `python -m monai.bundle run --config_file evaluate.yaml ...`."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from stbv_monai import BUNDLE_ROOT, REPO_ROOT
from stbv_monai.data import load_datalist, read_mask, write_mask
from stbv_monai.networks import PropagationNet, build_network

pytestmark = pytest.mark.slow


def _evaluate(dataset, out, *args):
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(BUNDLE_ROOT / "configs" / "evaluate.yaml"),
           "--dataset_dir", str(dataset.parent), "--output_dir", str(out), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)


def test_scores_a_checkpoint_under_both_protocols(disc_dataset, tmp_path):
    torch.manual_seed(0)
    ckpt = tmp_path / "model.pt"
    torch.save(PropagationNet(build_network("stcn_small")).state_dict(), ckpt)
    for protocol, n_refs in (("labelled", 2), ("first_frame", 1)):
        out = tmp_path / protocol
        proc = _evaluate(disc_dataset, out, "--ckpt", str(ckpt), "--protocol", protocol)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "J&F" in proc.stdout + proc.stderr  # the short table is printed
        summary = json.loads((out / "summary.json").read_text())
        assert summary["n_videos"] == 3 and summary["n_frames"] == 3 * (8 - n_refs)
        with open(out / "metrics_per_video.csv") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == 3 and all(len(r["reference_frames"].split()) == n_refs for r in rows)
        assert (out / "metrics_per_frame.csv").is_file() and (out / "metrics_plot.png").stat().st_size > 0


def test_scores_another_tools_predictions_without_a_model(disc_dataset, tmp_path):
    preds = tmp_path / "preds"
    for entry in load_datalist(disc_dataset, "test"):
        write_mask(preds / entry["image"].split("/")[-1], read_mask(entry["label"]))  # a perfect tool
    out = tmp_path / "eval"
    proc = _evaluate(disc_dataset, out, "--predictions_dir", str(preds), "--ckpt", "/nonexistent/model.pt")
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["J"] == pytest.approx(1.0) and summary["F"] == pytest.approx(1.0) and summary["HD95"] == 0.0


def test_bad_checkpoint_is_one_line(disc_dataset, tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(np.arange(100, dtype=np.uint8).tobytes())
    proc = _evaluate(disc_dataset, tmp_path / "eval", "--ckpt", str(bad))
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {bad}: not a PyTorch checkpoint")
    assert "Traceback" not in proc.stderr
