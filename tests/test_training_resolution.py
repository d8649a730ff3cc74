"""The network runs at the resolution it was trained at, which travels inside its saved file."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stbv_monai.data import load_datalist, read_mask, read_video, write_mask, write_video
from stbv_monai.engines import VideoEvaluator
from stbv_monai.inference import VideoPropagationInferer
from stbv_monai.engines.workflow import load_model, run_engine
from stbv_monai.handlers import video_metrics
from stbv_monai.networks import build_network, read_state_dict
from stbv_monai.networks.stcn import TRAINING_SIZE_KEY

from conftest import write_disc_dataset

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG = "['bundle/configs/train.yaml','configs/presets/tiny.yaml']"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A teacher trained at 64x64 on 64x64 disc videos (the tiny preset, a few dozen iterations)."""
    root = tmp_path_factory.mktemp("resolution")
    datalist = write_disc_dataset(root / "data", n_videos=3, t=10, size=64)
    out = root / "out"
    cmd = [sys.executable, "-m", "monai.bundle", "run", "teacher", "--config_file", CONFIG,
           "--dataset_dir", str(datalist.parent), "--output_dir", str(out), "--spatial_size", "[64, 64]",
           "--teacher_stage#iterations", "40", "--tracking_enabled", "false", "--pretraining", "false"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return datalist, out / "models" / "teacher.pt"


def _rescaled_copy(datalist: Path, dst: Path, size: tuple[int, int]) -> Path:
    """The same videos stored at ``size``: frames bilinear, masks nearest."""
    entries = load_datalist(datalist, "test")
    out = []
    for e in entries:
        frames = torch.from_numpy(read_video(e["image"]).frames)[None]
        mask = torch.from_numpy(read_mask(e["label"]).astype(np.float32))[None]
        name = Path(e["image"]).name
        write_video(dst / "images" / name, F.interpolate(frames, size=size, mode="bilinear")[0].numpy())
        write_mask(dst / "labels" / name, F.interpolate(mask, size=size, mode="nearest")[0].numpy().astype(np.uint8))
        out.append({"image": f"images/{name}", "label": f"labels/{name}", "labelled_frames": e["labelled_frames"]})
    path = dst / "datalist.json"
    path.write_text(json.dumps({"training": out, "validation": out, "test": out}))
    return path


def _jf(network: torch.nn.Module, datalist: Path) -> float:
    evaluator = VideoEvaluator(VideoPropagationInferer(top_k=5), load_datalist(datalist, "test"), network,
                               metrics=video_metrics(use_spacing=False))
    metrics = run_engine(evaluator)
    return float(metrics["JF"])


def test_the_saved_network_records_its_resolution_and_scores_alike_at_any_storage_size(trained, tmp_path):
    datalist, teacher = trained
    assert read_state_dict(teacher)[TRAINING_SIZE_KEY].tolist() == [64, 64]
    network = load_model(build_network("stcn_small"), teacher, "cpu")  # built without a size: the file's wins
    assert network.trained_at() == (64, 64)
    scores = {(64, 64): _jf(network, datalist)}
    for size in ((128, 128), (96, 128)):
        scores[size] = _jf(network, _rescaled_copy(datalist, tmp_path / f"{size[0]}x{size[1]}", size))
    assert scores[(64, 64)] > 0.5, scores  # the model tracks, so the comparison means something
    for size, jf in scores.items():
        assert abs(jf - scores[(64, 64)]) <= 0.01, scores


def test_an_old_file_without_a_resolution_falls_back_to_the_config_with_a_warning(trained, tmp_path, caplog):
    _, teacher = trained
    state = {k: v for k, v in read_state_dict(teacher).items() if not k.endswith(TRAINING_SIZE_KEY)}
    old = tmp_path / "old.pt"
    torch.save(state, old)
    with caplog.at_level(logging.WARNING):
        network = load_model(build_network("stcn_small", training_size=(48, 48)), old, "cpu")
    assert network.trained_at() == (48, 48)
    assert "does not record the resolution it was trained at; using the configured size 48x48" in caplog.text
