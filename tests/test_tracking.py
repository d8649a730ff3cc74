"""MLflow tracking: run tree, params, store resolution and fallback, against real MLflow stores and servers."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlflow_utils import assert_three_stage_tree, free_port, mlflow_server, run_tree
from stbv_monai import BUNDLE_ROOT, REPO_ROOT
from stbv_monai.tracking import RunTree, default_uri, flatten_config, resolve_uri, split_metrics

CONFIGS = BUNDLE_ROOT / "configs"
TINY = REPO_ROOT / "configs" / "presets" / "tiny.yaml"


def _bundle(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "monai.bundle", "run", *args], capture_output=True, text=True,
                          timeout=600, cwd=REPO_ROOT, env=dict(os.environ, OMP_NUM_THREADS="1", **(env or {})))


# ---------------------------------------------------------------- params and stores
def test_flatten_config_keeps_plain_values_and_resolved_references():
    raw = {"lr": 0.1, "imports": ["$import os"], "out": "$os.getcwd()", "opt": {"_target_": "Adam", "lr": "@lr"},
           "size": [128, 128], "net": "$build()", "training": ["$@teacher", "$@student"], "stage": {"dir": "$x"}}
    resolved = {"out": "/tmp/o", "net": object(), "stage::dir": "/tmp/o/teacher"}
    assert flatten_config(raw, resolved) == {"lr": "0.1", "out": "/tmp/o", "opt.lr": "0.1", "size": "[128, 128]",
                                             "stage.dir": "/tmp/o/teacher"}


def test_tracking_uri_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_uri(None, tmp_path) == (default_uri(tmp_path), None)
    assert default_uri(tmp_path) == f"sqlite:///{tmp_path}/mlruns.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/env.db")
    assert resolve_uri(None, tmp_path)[0] == f"sqlite:///{tmp_path}/env.db"
    assert resolve_uri(f"sqlite:///{tmp_path}/cli.db", tmp_path)[0] == f"sqlite:///{tmp_path}/cli.db"
    # a plain folder (older MLflow's store) becomes a SQLite store in it
    assert resolve_uri(str(tmp_path / "runs"), tmp_path)[0] == f"sqlite:///{tmp_path}/runs/mlruns.db"


def test_an_unreachable_server_falls_back_to_the_local_store(tmp_path):
    uri, problem = resolve_uri(f"http://127.0.0.1:{free_port()}", tmp_path)
    assert uri == default_uri(tmp_path)
    assert "unreachable" in problem and str(tmp_path) in problem


def test_split_metrics_names_match_the_comparison():
    assert split_metrics({"J": 1, "F": 2, "JF": 3, "Dice": 4, "HD95": 5}) == {
        "test_J": 1, "test_F": 2, "test_JF": 3, "test_dice": 4, "test_hd95": 5}


# ---------------------------------------------------------------- the run tree, in process
def _tree(tmp_path: Path, **kwargs) -> RunTree:
    return RunTree(tmp_path / "out", tracking_uri=f"sqlite:///{tmp_path}/mlruns.db", run_name="r",
                   tags={"variant": "v", "seed": 0}, **kwargs)


def test_a_failed_stage_marks_its_run_and_the_parent_failed(tmp_path):
    tree = _tree(tmp_path)
    tree.stage("teacher", lambda: 1, metrics=lambda r: {"x": r})
    with pytest.raises(ZeroDivisionError):
        tree.stage("student", lambda: 1 / 0)
    client, parents, children = run_tree(f"sqlite:///{tmp_path}/mlruns.db")
    (parent,) = parents
    kids = {r.info.run_name: r for r in children[parent.info.run_id]}
    assert parent.info.status == "FAILED" and "ZeroDivisionError" in parent.data.tags["error"]
    assert kids["teacher"].info.status == "FINISHED" and kids["teacher"].data.metrics == {"x": 1.0}
    assert kids["student"].info.status == "FAILED" and "division by zero" in kids["student"].data.tags["error"]
    assert kids["student"].data.tags["variant"] == "v" and kids["student"].data.tags["stbv.stage"] == "student"


def test_resume_continues_the_recorded_parent_and_a_new_run_does_not(tmp_path):
    first = _tree(tmp_path)
    first.stage("teacher", lambda: None)
    parent_id = first.parent_id
    first._open_child("killed")  # a stage whose process was killed: its run stays RUNNING
    first.client.set_terminated(parent_id, "KILLED")
    resumed = _tree(tmp_path)
    assert resumed.begin(resume=True) == parent_id
    resumed.stage("student", lambda: None)
    resumed.end()
    fresh = _tree(tmp_path)
    assert fresh.begin(resume=False) != parent_id
    fresh.end()
    _, parents, children = run_tree(f"sqlite:///{tmp_path}/mlruns.db")
    assert len(parents) == 2 and {p.info.status for p in parents} == {"FINISHED"}
    assert [(r.info.run_name, r.info.status) for r in children[parent_id]] == [
        ("teacher", "FINISHED"), ("killed", "KILLED"), ("student", "FINISHED")]


def test_tracking_off_writes_nothing(tmp_path):
    tree = _tree(tmp_path, enabled=False)
    assert tree.stage("teacher", lambda: 7) == 7
    assert not tree.active and not (tmp_path / "mlruns.db").exists() and not (tmp_path / "out").exists()


def test_a_server_that_dies_mid_run_is_reported_once_and_never_stops_the_work(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    with mlflow_server(tmp_path / "server") as uri:
        tree = RunTree(tmp_path / "out", tracking_uri=uri)
        tree.stage("teacher", lambda: None, metrics=lambda _: {"loss": 1.0})
        assert tree.active
    with caplog.at_level(logging.WARNING, logger="stbv_monai.tracking.run_tree"):
        assert tree.stage("student", lambda: 5, metrics=lambda _: {"loss": 0.5}) == 5
        tree.log_metrics({"loss": 0.1}, step=2)
        tree.end()
    warnings = [r for r in caplog.records if "MLflow tracking failed" in r.getMessage()]
    assert len(warnings) == 1 and not tree.active


# ---------------------------------------------------------------- whole workflows
@pytest.mark.slow
def test_three_stage_training_is_tracked_on_a_real_server(disc_dataset, tmp_path):
    out = tmp_path / "out"
    with mlflow_server(tmp_path / "server") as uri:
        proc = _bundle("training", "--config_file", f"['{CONFIGS / 'train.yaml'}','{TINY}']",
                       "--dataset_dir", str(disc_dataset.parent), "--output_dir", str(out), "--tracking_uri", uri)
        assert proc.returncode == 0, proc.stderr[-3000:]
        tree = assert_three_stage_tree(uri, iterations=3)
        client, evaluate = tree["client"], tree["children"]["evaluate"]
        local = client.download_artifacts(evaluate.info.run_id, "summary.json", str(tmp_path / "dl"))
        assert json.loads(Path(local).read_text()) == json.loads((out / "evaluation" / "summary.json").read_text())
        # the comparison reads what the training logged, through the server
        table = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "compare_runs.py"), "--tracking-uri", uri,
                                "--out", str(tmp_path / "compare")], capture_output=True, text=True, timeout=300)
        assert table.returncode == 0, table.stderr[-2000:]
        jf = 100 * tree["parent"].data.metrics["test_JF"]
        assert f"| ours | 25.0% | 1 | {jf:.1f} ± 0.0 |" in table.stdout, table.stdout  # 2 of 8 frames labelled
    assert not (out / "mlruns.db").exists()  # everything went to the server


@pytest.mark.slow
def test_an_unreachable_server_is_reported_once_and_the_run_goes_to_the_local_store(disc_dataset, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    out = tmp_path / "eval"
    proc = _bundle("--config_file", str(CONFIGS / "evaluate.yaml"), "--dataset_dir", str(disc_dataset.parent),
                   "--method", "copy", "--output_dir", str(out), env={"MLFLOW_TRACKING_URI": dead})
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert log.count("is unreachable") == 1, log[-3000:]
    _, parents, _ = run_tree(default_uri(out))
    (run,) = parents
    assert run.info.status == "FINISHED" and run.data.tags["fallback_from"] == dead
    assert run.data.tags["stbv.workflow"] == "evaluate" and 0 <= run.data.metrics["test_JF"] <= 1
