"""scripts/frame_distance.py: J&F against distance to the nearest reference, from real evaluation reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from conftest import write_disc_dataset
from stbv_monai import REPO_ROOT
from stbv_monai.data import load_datalist, read_mask
from stbv_monai.engines import VideoEvaluator
from stbv_monai.engines.workflow import run_engine
from stbv_monai.handlers import VideoMetricsHandler
from stbv_monai.inference import CopyReferenceInferer

SCRIPT = REPO_ROOT / "scripts" / "frame_distance.py"


def _evaluate(entries: list[dict], inferer, folder: Path) -> Path:
    run_engine(VideoEvaluator(inferer, entries), [VideoMetricsHandler(output_dir=folder, print_table=False)])
    return folder


def test_a_tracker_beats_copying_far_from_the_references_and_the_script_says_so(tmp_path):
    datalist = write_disc_dataset(tmp_path / "data", n_videos=2, t=12)
    entries = load_datalist(datalist, "test")

    def oracle(frames, network, references=None, entry=None, **kwargs):  # noqa: ARG001 - J&F 1 on every frame
        return torch.from_numpy(read_mask(entry["label"]).astype(np.float32))

    copy = _evaluate(entries, CopyReferenceInferer(), tmp_path / "copy")
    truth = _evaluate(entries, oracle, tmp_path / "truth")
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"videos": [{"image": "a", "score": {"JF": 0.8}},
                                               {"image": "b", "score": {"JF": 0.6}}]}))
    out = tmp_path / "docs" / "fd.png"
    done = subprocess.run([sys.executable, str(SCRIPT), "--eval", f"copy={copy}", "--eval", f"truth={truth},{truth}",
                           "--manifest", str(manifest), "--bin", "2", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert out.is_file() and out.stat().st_size > 0
    rows = out.with_suffix(".csv").read_text().splitlines()
    assert rows[0] == "model,distance_from,frames,mean_jf"
    truth_rows = [r.split(",") for r in rows[1:] if r.startswith("truth,")]
    assert truth_rows and all(float(r[3]) == 1.0 for r in truth_rows)
    copy_far = [float(r.split(",")[3]) for r in rows[1:] if r.startswith("copy,") and int(r.split(",")[1]) >= 3]
    assert copy_far and max(copy_far) < 1.0  # the disc moves: copying a mask fails away from it
    text = done.stdout
    assert "| distance | copy J&F (frames) | truth J&F (frames) |" in text
    assert "truth − copy per test video" in text and "2 of 2 videos better" in text
    assert "Pseudo-labels per training video (J&F): mean 70.0" in text


def test_a_folder_without_a_report_is_one_line(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--eval", f"x={tmp_path}", "--out", str(tmp_path / "o.png")],
                          capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path / 'metrics_per_frame.csv'}: not found: give an evaluation folder "
        "(it holds metrics_per_frame.csv)")
