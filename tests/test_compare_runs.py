"""scripts/compare_runs.py on real embedded MLflow stores: parent runs only, latest per seed, merged stores, errors."""

from __future__ import annotations

import csv
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlflow import MlflowClient  # a hard dependency: imported plainly, never skipped

from mlflow_utils import free_port
from stbv_monai.errors import InputError
from stbv_monai.tracking.compare import aggregate, collect_runs

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "compare_runs.py"
T0 = 1_700_000_000_000  # ms; runs get explicit, increasing start times


def _store(folder: Path) -> tuple[MlflowClient, str, str]:
    """An embedded SQLite store with the ``stbv-monai`` experiment; artifacts inside ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{folder}/mlruns.db"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("stbv-monai", artifact_location=(folder / "artifacts").as_uri())
    return client, uri, exp


def _log(client: MlflowClient, exp: str, variant: str, seed: int, jf: float, *, hd95: float = 10.0,
         fraction: str = "0.02", status: str = "FINISHED", start: int = 0, parent: str | None = None) -> str:
    """A parent training run like the training workflow logs (a child run when ``parent`` is given)."""
    tags = {"variant": variant, "preset": "cpu", "seed": str(seed), "dataset": "synthetic",
            "stbv.workflow": "training"}
    if parent:
        tags["mlflow.parentRunId"] = parent
    run_id = client.create_run(exp, start_time=T0 + start, tags=tags).info.run_id
    client.log_param(run_id, "labelled_fraction", fraction)
    for key, value in {"test_JF": jf, "test_J": jf - 0.05, "test_F": jf + 0.05, "test_dice": jf + 0.02,
                       "test_hd95": hd95, "test_first_JF": jf - 0.1}.items():
        client.log_metric(run_id, key, value)
    client.set_terminated(run_id, status=status, end_time=T0 + start + 1000)
    return run_id


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Store ``main``: 4 variants and the runs to ignore; store ``second``: one more stcs seed."""
    tmp = tmp_path_factory.mktemp("mlflow")
    client, uri, exp = _store(tmp / "main")
    _log(client, exp, "ours", 0, 0.10, start=1)  # superseded by the later run of the same seed
    _log(client, exp, "ours", 0, 0.80, start=10)
    _log(client, exp, "ours", 1, 0.84, start=11)
    vanilla = _log(client, exp, "vanilla", 0, 0.70, hd95=10.0, start=2)
    _log(client, exp, "vanilla", 1, 0.80, hd95=14.0, start=3)
    _log(client, exp, "vanilla", 2, 0.00, parent=vanilla, start=4)  # a stage's child run
    _log(client, exp, "vanilla", 3, 0.00, status="FAILED", start=5)
    _log(client, exp, "full_supervision", 0, 0.90, fraction="1.0", start=6)
    _log(client, exp, "full_supervision", 1, 0.90, fraction="1.0", start=7)
    _log(client, exp, "stcs", 0, 0.60, start=8)
    client2, uri2, exp2 = _store(tmp / "second")
    _log(client2, exp2, "stcs", 1, 0.70, start=9)
    return {"main": uri, "second": uri2, "tmp": str(tmp)}


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_table_from_runs(stores: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    proc = _run("--tracking-uri", stores["main"], "--out", str(out), "--protocol", "labelled")
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0] == "| method | labelled | seeds | J&F | J | F | DSC | HD95 |"
    assert [r.split(" | ")[0][2:] for r in rows[1:]] == ["full_supervision", "vanilla", "stcs", "ours"]
    assert rows[1] == ("| full_supervision | 100% | 2 | 90.0 ± 0.0 | 85.0 ± 0.0 | 95.0 ± 0.0 | 92.0 ± 0.0 "
                       "| 10.0 ± 0.0 |")
    assert rows[2] == "| vanilla | 2.0% | 2 | 75.0 ± 7.1 | 70.0 ± 7.1 | 80.0 ± 7.1 | 77.0 ± 7.1 | 12.0 ± 2.8 |"
    assert rows[3] == "| stcs | 2.0% | 1 | 60.0 ± 0.0 | 55.0 ± 0.0 | 65.0 ± 0.0 | 62.0 ± 0.0 | 10.0 ± 0.0 |"
    assert rows[4] == "| ours | 2.0% | 2 | 82.0 ± 2.8 | 77.0 ± 2.8 | 87.0 ± 2.8 | 84.0 ± 2.8 | 10.0 ± 0.0 |"
    assert "ours seed 0 (preset cpu): 2 finished runs, keeping the latest" in proc.stderr
    assert "1 child runs" in proc.stderr and "1 unfinished runs" in proc.stderr

    assert (out / "table.md").read_text() == "\n".join(
        line for line in proc.stdout.splitlines() if line.startswith("|")) + "\n"
    assert (out / "table.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(out / "table.csv", newline="") as fh:
        table = {r["method"]: r for r in csv.DictReader(fh)}
    assert list(table) == ["full_supervision", "vanilla", "stcs", "ours"]
    vanilla = table["vanilla"]
    assert vanilla["preset"] == "cpu" and vanilla["seeds"] == "2"
    assert float(vanilla["labelled_fraction"]) == pytest.approx(0.02)
    assert float(vanilla["JF_mean"]) == pytest.approx(75.0)
    assert float(vanilla["JF_std"]) == pytest.approx(7.0711, abs=1e-3)
    assert float(vanilla["HD95_mean"]) == pytest.approx(12.0)
    assert float(vanilla["HD95_std"]) == pytest.approx(2.8284, abs=1e-3)
    assert float(table["ours"]["JF_mean"]) == pytest.approx(82.0)
    assert not list(out.glob(".tmp-*")), "temporary files left behind"


def test_both_protocols_by_default(stores: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    proc = _run("--tracking-uri", stores["main"], "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "two labelled frames as references" in proc.stdout and "first frame where the lesion appears" in proc.stdout
    first = [line for line in (out / "table_first_frame.md").read_text().splitlines() if line.startswith("| vanilla")]
    assert first == ["| vanilla | 2.0% | 2 | 65.0 ± 7.1 | – | – | – | – |"]  # only test_first_JF was logged
    assert (out / "table.md").is_file() and (out / "table_first_frame.png").is_file()


def test_stores_are_merged(stores: dict[str, str]) -> None:
    runs = collect_runs([stores["main"], stores["second"], stores["main"]], "stbv-monai")
    rows = {r.variant: r for r in aggregate(runs)}
    assert rows["stcs"].seeds == 2
    assert rows["stcs"].mean["JF"] == pytest.approx(65.0)
    assert rows["stcs"].std["JF"] == pytest.approx(7.0711, abs=1e-3)
    assert rows["vanilla"].seeds == 2  # the main store listed twice counts once


def test_preset_filter(stores: dict[str, str]) -> None:
    runs = collect_runs([stores["main"]], "stbv-monai")
    assert [r.label for r in aggregate(runs, preset="cpu")] == ["full_supervision", "vanilla", "stcs", "ours"]
    with pytest.raises(InputError, match="presets found: cpu"):
        aggregate(runs, preset="paper")
    other = [{**r, "preset": "tiny", "run_id": r["run_id"] + "-tiny"} for r in runs if r["variant"] == "ours"]
    labels = [r.label for r in aggregate(runs + other)]
    assert labels == ["full_supervision (cpu)", "vanilla (cpu)", "stcs (cpu)", "ours (cpu)", "ours (tiny)"]


def test_missing_experiment(stores: dict[str, str], tmp_path: Path) -> None:
    proc = _run("--tracking-uri", stores["main"], "--experiment", "nope", "--out", str(tmp_path))
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [f"error: {stores['main']}: no MLflow experiment named 'nope'"]
    with pytest.raises(InputError, match="mlruns.db: no MLflow store"):
        collect_runs([f"sqlite:///{tmp_path}/mlruns.db"], "stbv-monai")


def test_unreachable_server_fails_fast() -> None:
    uri = f"http://127.0.0.1:{free_port()}"  # a port nothing listens on
    start = time.monotonic()
    with pytest.raises(InputError) as info:  # in-process: the CLI's one-line report is tested above
        collect_runs([uri], "stbv-monai")
    assert time.monotonic() - start < 30
    assert str(info.value).startswith(f"{uri}: MLflow tracking server unreachable")
