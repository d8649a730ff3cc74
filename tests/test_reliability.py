"""Runs that stop, collide or get impossible input: real bundle processes, real signals, real MLflow stores.

Settings that cannot work and an empty training list are one line each with nothing written; a
second training into a busy ``--output_dir`` is refused naming the running process, a dead run's
lock is taken over; SIGTERM checkpoints the iteration, marks the runs KILLED and says how to resume;
resume continues there, skips finished stages without logging them again and keeps only the newest
checkpoints; a video too large for the memory is refused naming its file; MLflow's ``error`` tag is
the root cause.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import write_disc_dataset
from mlflow_utils import run_tree
from stbv_monai import REPO_ROOT
from stbv_monai.data import load_datalist, load_video_pair
from stbv_monai.data.memory import MEMORY_LIMIT_ENV
from stbv_monai.engines.run_lock import LOCK_NAME, lock_output_dir, release
from stbv_monai.handlers import prune_checkpoints
from stbv_monai.errors import InputError, StopRequested, innermost_error
from stbv_monai.tracking import RunTree

TRAIN = "['bundle/configs/train.yaml','configs/presets/tiny.yaml']"
EVALUATE = "['bundle/configs/evaluate.yaml']"


def _cmd(run_id: str, config: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "monai.bundle", "run", run_id, "--config_file", config, *args]


def _run(run_id: str, *args: str, config: str = TRAIN, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(_cmd(run_id, config, *args), cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def _last_line(text: str) -> str:
    return [ln for ln in text.splitlines() if ln.strip()][-1]


# ---------------------------------------------------------------- input that cannot work
@pytest.mark.parametrize("config, args, message", [
    (TRAIN, ["--teacher_stage#iterations", "-5"], "--teacher_stage#iterations: must be an integer >= 1, got -5"),
    (TRAIN, ["--batch_size", "0"], "--batch_size: must be an integer >= 1, got 0"),
    (TRAIN, ["--spatial_size", "[0, 0]"], "--spatial_size: must be two integers >= 1 ([height, width]), got [0, 0]"),
    (TRAIN, ["--propagation#top_k", "0"], "--propagation#top_k: must be an integer >= 1, got 0"),
    (TRAIN, ["--max_skip", "0"], "--max_skip: must be an integer >= 1, got 0"),
    (EVALUATE, ["--propagation#top_k", "0"], "--propagation#top_k: must be an integer >= 1, got 0"),
])
def test_a_setting_that_cannot_work_is_one_line_and_nothing_is_written(tmp_path, config, args, message):
    out, data = tmp_path / "out", tmp_path / "data"
    run_id = "evaluating" if config == EVALUATE else "training"
    done = _run(run_id, *args, "--output_dir", str(out), "--dataset_dir", str(data), config=config)
    assert done.returncode != 0
    assert _last_line(done.stderr) == f"error: {message}"
    assert "Traceback" not in done.stderr
    assert not out.exists() and not data.exists()


def test_an_empty_training_list_is_one_line(tmp_path):
    datalist = write_disc_dataset(tmp_path / "data", n_videos=1)
    raw = json.loads(datalist.read_text())
    datalist.write_text(json.dumps({**raw, "training": []}))
    done = _run("teacher", "--dataset_dir", str(datalist.parent), "--output_dir", str(tmp_path / "out"))
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert _last_line(done.stderr) == f"error: {datalist}: datalist's 'training' list is empty: it needs at least one video"


def test_a_video_too_large_for_the_memory_is_refused_naming_it(tmp_path, monkeypatch):
    datalist = write_disc_dataset(tmp_path / "data", n_videos=1)  # 8 x 32 x 32: about 96 KiB to segment
    (entry,) = load_datalist(datalist, "training")
    monkeypatch.setenv(MEMORY_LIMIT_ENV, str(64 / 2**20))  # 64 KiB
    with pytest.raises(InputError, match=r"vid0\.nii\.gz: a 8x32x32 .* needs about 0\.00 GiB .* more than the 0\.00 GiB"):
        load_video_pair(entry)
    monkeypatch.setenv(MEMORY_LIMIT_ENV, str(1 / 2**10))  # 1 MiB: fits
    assert load_video_pair(entry)["image"].shape == (8, 32, 32)
    done = _run("teacher", "--dataset_dir", str(datalist.parent), "--output_dir", str(tmp_path / "out"),
                "--pretraining", "false", env={MEMORY_LIMIT_ENV: str(64 / 2**20)})
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert _last_line(done.stderr).startswith(f"error: {entry['image']}: a 8x32x32 (frames x height x width) video needs")


# ---------------------------------------------------------------- one run per output folder
def test_a_lock_from_a_live_process_refuses_and_a_dead_ones_is_taken_over(tmp_path, caplog):
    out = tmp_path / "out"
    out.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = out / LOCK_NAME
        lock.write_text(json.dumps({"pid": sleeper.pid, "host": os.uname().nodename, "since": "then"}))
        with pytest.raises(InputError, match=rf"another run is writing here: pid {sleeper.pid} on"):
            lock_output_dir(out)
    finally:
        sleeper.kill()
        sleeper.wait()
    path = lock_output_dir(out)  # the sleeper is gone: its lock is stale
    assert "taking over from a run that is no longer running" in caplog.text
    assert json.loads(path.read_text())["pid"] == os.getpid()
    release(path)
    assert not path.exists()


def _wait_for(path_glob: Path, pattern: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not list(path_glob.glob(pattern)):
        assert proc.poll() is None, f"the run ended early (exit {proc.returncode})"
        assert time.time() < deadline, f"no {pattern} in {path_glob} after {timeout} s"
        time.sleep(0.2)


@pytest.mark.slow
def test_sigterm_checkpoints_resume_continues_and_finished_stages_are_not_logged_again(tmp_path):
    datalist = write_disc_dataset(tmp_path / "data")
    out = tmp_path / "out"
    args = ("--dataset_dir", str(datalist.parent), "--output_dir", str(out), "--teacher_stage#iterations", "300",
            "--checkpoint_interval", "10", "--pretraining", "false")
    log = open(tmp_path / "first.log", "w")
    first = subprocess.Popen(_cmd("training", TRAIN, *args), cwd=REPO_ROOT, stdout=log, stderr=subprocess.PIPE,
                             text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    _wait_for(out / "teacher" / "checkpoints", "checkpoint_iteration=10.pt", first)

    # a second training into the busy folder is refused, naming the first, and writes nothing
    before = sorted(p.relative_to(out) for p in out.rglob("*") if "checkpoint" not in p.name and "mlruns" not in str(p))
    second = _run("training", *args)
    assert second.returncode != 0 and "Traceback" not in second.stderr
    assert f"another run is writing here: pid {first.pid} on" in _last_line(second.stderr)
    assert sorted(p.relative_to(out) for p in out.rglob("*")
                  if "checkpoint" not in p.name and "mlruns" not in str(p)) == before

    first.send_signal(signal.SIGTERM)
    _, err = first.communicate(timeout=120)
    log.close()
    assert first.returncode == 128 + signal.SIGTERM
    line = _last_line(err)
    assert line.startswith("stopped by SIGTERM at iteration ") and line.endswith(
        "of 300: its checkpoint is saved; run the same command with --resume true to continue")
    stopped_at = int(line.split("iteration ")[1].split()[0])
    final = out / "teacher" / "checkpoints" / "checkpoint_final.pt"
    assert torch.load(final, weights_only=True)["trainer"]["iteration"] == stopped_at
    assert not (out / LOCK_NAME).exists()
    uri = f"sqlite:///{out}/mlruns.db"
    _, (parent,), children = run_tree(uri)
    assert parent.info.status == "KILLED" and parent.data.tags["error"].startswith("StopRequested: stopped by SIGTERM")
    assert [(r.info.run_name, r.info.status) for r in children[parent.info.run_id]] == [("teacher", "KILLED")]

    resumed = _run("training", *args, "--resume", "true")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {final}" in resumed.stdout + resumed.stderr
    checkpoints = sorted(p.name for p in final.parent.glob("checkpoint_iteration=*.pt"))
    assert checkpoints == ["checkpoint_iteration=290.pt", "checkpoint_iteration=300.pt"]  # n_saved=2, the killed run's too
    _, (parent,), children = run_tree(uri)
    kids = [(r.info.run_name, r.info.status) for r in children[parent.info.run_id]]
    assert parent.info.status == "FINISHED"
    assert sorted(kids) == sorted([("teacher", "KILLED"), ("teacher", "FINISHED"), ("pseudo_label", "FINISHED"),
                                   ("student", "FINISHED"), ("evaluate", "FINISHED")])

    again = _run("training", *args, "--resume", "true")
    assert again.returncode == 0, again.stderr[-3000:]
    for stage in ("teacher", "pseudo_label", "student", "evaluate"):
        assert f"{stage}: already done, skipped (resume)" in again.stdout + again.stderr
    _, (parent,), children = run_tree(uri)
    assert sorted((r.info.run_name, r.info.status) for r in children[parent.info.run_id]) == sorted(kids)


# ---------------------------------------------------------------- pieces
def test_only_the_newest_interval_checkpoints_stay(tmp_path):
    for i in (10, 20, 30, 40):
        (tmp_path / f"checkpoint_iteration={i}.pt").write_bytes(b"x")
    (tmp_path / "checkpoint_final.pt").write_bytes(b"x")
    removed = prune_checkpoints(tmp_path, keep=2)
    assert sorted(Path(p).name for p in removed) == ["checkpoint_iteration=10.pt", "checkpoint_iteration=20.pt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint_final.pt", "checkpoint_iteration=30.pt", "checkpoint_iteration=40.pt"]


def test_the_mlflow_error_tag_is_the_root_cause(tmp_path):
    def wrapped() -> None:
        try:
            raise FileNotFoundError("vid0.nii.gz: file not found")
        except FileNotFoundError as exc:
            raise RuntimeError("Failed to evaluate ConfigExpression: $@teacher_stage#trainer.run()") from exc

    tree = RunTree(tmp_path / "out", tracking_uri=f"sqlite:///{tmp_path}/mlruns.db")
    with pytest.raises(RuntimeError):
        tree.stage("teacher", wrapped)
    _, (parent,), children = run_tree(f"sqlite:///{tmp_path}/mlruns.db")
    (child,) = children[parent.info.run_id]
    for run in (parent, child):
        assert run.data.tags["error"] == "FileNotFoundError: vid0.nii.gz: file not found"
    assert innermost_error(StopRequested(signal.SIGINT)).code == 128 + signal.SIGINT


def test_pseudo_labels_older_than_the_teacher_are_redone(tmp_path):
    from stbv_monai.engines import PseudoLabeller

    datalist = write_disc_dataset(tmp_path / "data", n_videos=1)
    entries = load_datalist(datalist, "training")
    teacher = tmp_path / "teacher.pt"
    teacher.write_bytes(b"weights")
    calls = []

    def propagate(frames, network, references=None, **kwargs):  # noqa: ARG001 - an inferer
        calls.append(1)
        return torch.zeros(frames.shape)

    labeller = PseudoLabeller(torch.nn.Identity(), entries, tmp_path / "pl", propagate, teacher_path=teacher)
    labeller.run()
    assert labeller.finished() and len(calls) == 1
    labeller.run()
    assert len(calls) == 1  # resumed: nothing pending
    past = teacher.stat().st_mtime - 10  # the teacher was retrained after these labels were written
    for path in (tmp_path / "pl").iterdir():
        os.utime(path, (past, past))
    assert not labeller.finished() and [e["id"] for e in labeller.pending()] == [entries[0]["id"]]
    labeller.run()
    assert len(calls) == 2 and labeller.finished()
    assert np.asarray(json.loads((tmp_path / "pl" / "manifest.json").read_text())["videos"][0]["source"]).size == 8
