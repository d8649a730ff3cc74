"""Stage 0 through the bundle: `run pretrain` on the embedded stills, resume, and the teacher starting from it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from conftest import write_disc_dataset
from stbv_monai import REPO_ROOT
from stbv_monai.networks import read_state_dict

TRAIN = "['bundle/configs/train.yaml','configs/presets/tiny.yaml']"


def _run(run_id: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "monai.bundle", "run", run_id, "--config_file", TRAIN, *args],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


@pytest.mark.slow
def test_pretrain_on_the_embedded_stills_resumes_and_the_teacher_starts_from_it(tmp_path):
    data = write_disc_dataset(tmp_path / "videos" / "data").parent
    out = tmp_path / "out"
    common = ("--dataset_dir", str(data), "--output_dir", str(out), "--tracking_enabled", "false",
              "--pretrain_stage#iterations", "4")
    log = _run("pretrain", *common)
    stills = tmp_path / "videos" / "synthetic_stills"  # generated on first use, next to the videos
    assert "generating synthetic breast-ultrasound stills" in log and (stills / "normal").is_dir()
    pretrained = out / "models" / "pretrain.pt"
    weights = read_state_dict(pretrained)
    assert weights["training_size"].tolist() == [32, 32]  # recorded like every saved network
    assert torch.load(out / "pretrain" / "checkpoints" / "checkpoint_final.pt",
                      weights_only=True)["trainer"]["iteration"] == 4

    # resume: a finished stage is skipped; a larger budget continues from its checkpoint
    assert "pretrain: already done, skipped (resume)" in _run("pretrain", *common, "--resume", "true")
    log = _run("pretrain", *common[:-1], "6", "--resume", "true")
    assert "resuming from" in log and "generating" not in log
    assert torch.load(out / "pretrain" / "checkpoints" / "checkpoint_final.pt",
                      weights_only=True)["trainer"]["iteration"] == 6

    # the teacher starts from the pretrained weights: every tensor loaded, the resolution its own
    log = _run("teacher", *common)
    assert f"teacher: starting from {pretrained}" in log
    n_tensors = len(weights)
    assert f"load_pretrained {pretrained} (stcn): loaded {n_tensors - 1}, missing 1, unexpected 0, mismatched 0" in log

    # --init names the starting point instead: pretraining is skipped, every stage starts from it
    log = _run("pretrain", *common, "--init", str(pretrained))
    assert f"pretrain: skipped, every stage starts from --init {pretrained}" in log
