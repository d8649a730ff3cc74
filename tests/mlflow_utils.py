"""A real ``mlflow server`` on loopback for tests, and checks of the run tree a training leaves."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

MLFLOW = Path(sys.executable).with_name("mlflow")
STAGES = ("pretrain", "teacher", "pseudo_label", "student", "evaluate")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def mlflow_server(root: Path, timeout: float = 120.0) -> Iterator[str]:
    """Start ``mlflow server`` (SQLite backend, proxied artifacts under ``root``); yield its URI; stop it."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = open(root / "server.log", "w")
    proc = subprocess.Popen(
        [str(MLFLOW), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts")],
        stdout=log, stderr=subprocess.STDOUT, cwd=root,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout
        while True:
            try:
                with urllib.request.urlopen(uri + "/health", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("mlflow server did not start:\n" + (root / "server.log").read_text()[-3000:])
                time.sleep(0.5)
        yield uri
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def run_tree(uri: str, experiment: str = "stbv-monai") -> tuple[object, list, dict[str, list]]:
    """The client, the parent runs (oldest first) and, per parent id, its children (oldest first)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment!r} in {uri}"
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = {p.info.run_id: [r for r in runs if r.data.tags.get("mlflow.parentRunId") == p.info.run_id]
                for p in parents}
    return client, parents, children


def artifact_paths(client, run_id: str, path: str | None = None) -> set[str]:
    """Every artifact file of a run, recursively."""
    out: set[str] = set()
    for item in client.list_artifacts(run_id, path):
        out |= artifact_paths(client, run_id, item.path) if item.is_dir else {item.path}
    return out


def assert_three_stage_tree(uri: str, iterations: int, experiment: str = "stbv-monai") -> dict:
    """One FINISHED parent with FINISHED pretrain/teacher/pseudo_label/student/evaluate children holding what they must."""
    client, parents, children = run_tree(uri, experiment)
    assert len(parents) == 1, [p.info.run_name for p in parents]
    parent = parents[0]
    kids = {r.info.run_name: r for r in children[parent.info.run_id]}
    assert sorted(kids) == sorted(STAGES)
    assert {r.info.status for r in [parent, *kids.values()]} == {"FINISHED"}
    tags = parent.data.tags
    assert tags["variant"] == "ours" and tags["preset"] == "tiny" and tags["stbv.workflow"] == "training"
    assert tags["dataset"] and len(tags.get("git_commit", "x" * 40)) == 40
    params = parent.data.params
    assert params["lr"] == "0.0001" and params["teacher_stage.iterations"] == str(iterations)
    assert params["seed"] == "0" and 0 < float(params["labelled_fraction"]) < 1
    for key in ("test_J", "test_F", "test_JF", "test_dice", "test_hd95"):
        assert key in parent.data.metrics, key
        assert parent.data.metrics[key] == kids["evaluate"].data.metrics[key]
    for stage in ("pretrain", "teacher", "student"):
        run_id = kids[stage].info.run_id
        assert [m.step for m in client.get_metric_history(run_id, "loss")] == list(range(1, iterations + 1))
        assert len(client.get_metric_history(run_id, "lr_group_0")) == iterations
        assert [m.step for m in client.get_metric_history(run_id, "val_JF")] == [iterations]
        assert artifact_paths(client, run_id) == {f"{stage}_best.pt", "plots/losses.png"}
    pseudo = kids["pseudo_label"].data.metrics
    assert pseudo["frames_gt"] > 0 and pseudo["frames_pseudo"] > 0 and 0.5 <= pseudo["mean_confidence"] <= 1
    assert 0 <= pseudo["pseudo_JF"] <= 1
    assert artifact_paths(client, kids["pseudo_label"].info.run_id) == {"manifest.json"}
    evaluated = artifact_paths(client, kids["evaluate"].info.run_id)
    assert {"metrics_per_video.csv", "summary.json", "metrics_plot.png"} <= evaluated
    assert any(p.startswith("previews/overlays/") and p.endswith(".gif") for p in evaluated)
    assert artifact_paths(client, parent.info.run_id) == {"config/config.json", "config/params.json"}
    return {"client": client, "parent": parent, "children": kids}
