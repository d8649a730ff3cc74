"""Compare trainings logged to MLflow: the paper's Table 1 (variants x seeds, mean ± std) from the run tree.

Every ``training`` invocation logs one parent run (tag ``stbv.workflow = training``) with child runs per
stage. The parents are the rows' raw material: their tags ``variant``, ``preset``, ``seed``, ``dataset``,
their param ``labelled_fraction`` and their final metrics ``test_J``, ``test_F``, ``test_JF``,
``test_dice`` (fractions) and ``test_hd95`` (a distance). Only FINISHED parents with ``test_JF`` count;
when a (preset, variant, seed) was trained more than once, the latest run wins, so re-running a crashed
or outdated seed simply replaces it.

Several tracking URIs can be read at once: a training whose server was unreachable logs to a local
SQLite fallback, and the table should still include it.

    runs = collect_runs(["http://mlflow:5000", "sqlite:///outputs/train/mlruns.db"], "stbv-monai")
    rows = aggregate(runs, preset="paper")
    print(to_markdown(rows)); to_csv(rows, "table.csv"); plot(rows, "table.png")
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stbv_monai.data.io import atomic_path
from stbv_monai.errors import InputError
from stbv_monai.tracking.run_tree import PROTOCOL_PREFIXES
from stbv_monai.tracking.store import probe

__all__ = ["METRICS", "VARIANT_ORDER", "Row", "collect_runs", "aggregate", "to_markdown", "write_markdown", "to_csv",
           "plot"]

logger = logging.getLogger(__name__)

#: (short name used in CSV columns, table header, MLflow metric key, scale to the table's unit)
METRICS: tuple[tuple[str, str, str, float], ...] = (
    ("JF", "J&F", "test_JF", 100.0),
    ("J", "J", "test_J", 100.0),
    ("F", "F", "test_F", 100.0),
    ("DSC", "DSC", "test_dice", 100.0),
    ("HD95", "HD95", "test_hd95", 1.0),
)
#: Table 1's row order; other variants follow alphabetically.
VARIANT_ORDER = ("full_supervision", "vanilla", "update", "stcs", "pseudo_no_sda", "ours", "resnext")
PARENT_TAG = "mlflow.parentRunId"
WORKFLOW_TAG = "stbv.workflow"
_PLOTTED = ("JF", "J", "F", "DSC")  # percentages share one axis; HD95 is a distance
_CSV_COLUMNS = ("method", "preset", "labelled_fraction", "seeds") + tuple(
    f"{short}_{stat}" for short, *_ in METRICS for stat in ("mean", "std"))


@dataclass(frozen=True)
class Row:
    """One table row: a variant (of one preset) aggregated over its seeds.

    ``mean``/``std`` are keyed by the short metric names of :data:`METRICS` (``JF``, ``J``, ``F``,
    ``DSC`` in percent, ``HD95`` as logged); ``std`` is the sample std (ddof=1), 0 for one seed.
    """

    variant: str
    preset: str
    label: str
    labelled_fraction: float  # mean over runs, 0..1; nan when no run logged it
    seeds: int
    mean: Mapping[str, float]
    std: Mapping[str, float]


# ---------------------------------------------------------------------------------------------- reading


def collect_runs(tracking_uris: Sequence[str], experiment: str) -> list[dict[str, Any]]:
    """The finished parent training runs with ``test_JF`` of ``experiment``, merged over all stores.

    Each run is a dict: ``run_id``, ``tracking_uri``, ``start_time`` (ms), ``variant``, ``preset``,
    ``seed``, ``dataset`` (tags; ``""`` when absent), ``labelled_fraction`` (float or ``None``) and
    ``metrics`` (the logged ``test_*`` values). A store without the experiment is skipped with a warning.

    Raises:
        InputError: a store that cannot be read (unreachable server, missing SQLite file), or no store
            having the experiment.
    """
    uris = list(dict.fromkeys(tracking_uris))  # the same store twice would double its runs
    if not uris:
        raise InputError("--tracking-uri", "no tracking URI given")
    for uri in uris:
        _check_store(uri)
    if any(_is_http(u) for u in uris):  # fail in seconds, not after minutes of back-off
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    runs: list[dict[str, Any]] = []
    missing = []
    for uri in uris:
        store_runs = _store_runs(uri, experiment)
        if store_runs is None:
            missing.append(uri)
        else:
            runs.extend(store_runs)
    if len(missing) == len(uris):
        raise InputError(", ".join(uris), f"no MLflow experiment named '{experiment}'")
    for uri in missing:
        logger.warning("%s: no MLflow experiment named '%s', skipped", uri, experiment)
    return runs


def _is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def _check_store(uri: str) -> None:
    """Fail fast on a store that cannot be read, instead of MLflow creating an empty one or retrying."""
    problem = probe(uri)
    if problem is not None:
        raise InputError(uri, f"MLflow tracking server unreachable ({problem})")
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///"):].split("?", 1)[0])
        if not path.is_file():
            raise InputError(uri, f"no MLflow store: {path} does not exist")


def _store_runs(uri: str, experiment: str) -> list[dict[str, Any]] | None:
    """The usable runs of ``experiment`` in one store; ``None`` when the store lacks the experiment."""
    from mlflow import MlflowClient  # slow import: only when reading runs
    from mlflow.exceptions import MlflowException

    try:
        client = MlflowClient(tracking_uri=uri)
        exp = client.get_experiment_by_name(experiment)
        if exp is None or exp.lifecycle_stage == "deleted":
            return None
        raw = list(_search_all(client, exp.experiment_id))
    except (MlflowException, OSError) as exc:  # requests' errors are OSErrors
        message = getattr(exc, "message", None) or str(exc)
        raise InputError(uri, f"cannot read MLflow runs: {message.splitlines()[0] if message else exc!r}") from exc
    runs, skipped = [], defaultdict(int)
    for run in raw:
        why = _unusable(run)
        if why:
            skipped[why] += 1
        else:
            runs.append(_as_dict(run, uri))
    summary = ", ".join(f"{n} {why}" for why, n in skipped.items())
    logger.info("%s: %d finished training runs%s", uri, len(runs), f" (skipped {summary})" if summary else "")
    return runs


def _search_all(client: Any, experiment_id: str) -> Iterator[Any]:
    """All training runs of an experiment, page by page (a page holds at most 1000)."""
    token = None
    while True:
        page = client.search_runs([experiment_id], filter_string=f"tags.`{WORKFLOW_TAG}` = 'training'",
                                  max_results=1000, order_by=["attributes.start_time DESC"], page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def _unusable(run: Any) -> str | None:
    """Why a run is no table row (``None``: it is one)."""
    if PARENT_TAG in run.data.tags:
        return "child runs"
    if run.info.status != "FINISHED":
        return "unfinished runs"
    if "test_JF" not in run.data.metrics:
        return "runs without test_JF"
    return None


def _as_dict(run: Any, uri: str) -> dict[str, Any]:
    tags, params = run.data.tags, run.data.params
    try:
        fraction: float | None = float(params["labelled_fraction"])
    except (KeyError, ValueError):
        fraction = None
    return {
        "run_id": run.info.run_id,
        "tracking_uri": uri,
        "start_time": run.info.start_time or 0,
        "variant": tags.get("variant", "") or "unknown",
        "preset": tags.get("preset", ""),
        "seed": tags.get("seed", ""),
        "dataset": tags.get("dataset", ""),
        "labelled_fraction": fraction,
        "metrics": {key: float(v) for key, v in run.data.metrics.items() if key.startswith("test_")},
    }


# ---------------------------------------------------------------------------------------------- aggregating


def aggregate(runs: Sequence[Mapping[str, Any]], preset: str | None = None, protocol: str = "labelled") -> list[Row]:
    """Rows of mean ± std over seeds per variant, in Table 1's order.

    Args:
        runs: from :func:`collect_runs`.
        preset: keep only runs with this ``preset`` tag. ``None`` keeps all; when they span several
            presets, each (preset, variant) is its own row, labelled ``variant (preset)``.
        protocol: whose test metrics (``labelled``: ``test_*``; ``first_frame``: ``test_first_*``).

    Raises:
        InputError: ``preset`` given and no run has it.
    """
    if preset is not None:
        kept = [r for r in runs if r["preset"] == preset]
        if runs and not kept:
            found = ", ".join(sorted({r["preset"] or "(none)" for r in runs}))
            raise InputError(f"preset '{preset}'", f"no finished training runs (presets found: {found})")
        runs = kept
    runs = _latest_per_seed(runs)
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for run in runs:
        groups[(run["preset"], run["variant"])].append(run)
    several = len({p for p, _ in groups}) > 1
    prefix = PROTOCOL_PREFIXES[protocol]
    rows = [_row(v, p, f"{v} ({p or 'no preset'})" if several else v, g, prefix) for (p, v), g in groups.items()]
    return sorted(rows, key=lambda r: (r.preset, *_variant_key(r.variant)))


def _variant_key(variant: str) -> tuple[int, str]:
    return (VARIANT_ORDER.index(variant), "") if variant in VARIANT_ORDER else (len(VARIANT_ORDER), variant)


def _latest_per_seed(runs: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """One run per (preset, variant, seed): the latest started; the others are logged as superseded."""
    by_key: dict[tuple, list[Mapping[str, Any]]] = defaultdict(list)
    for run in {r["run_id"]: r for r in runs}.values():
        seed = run["seed"] if run["seed"] != "" else f"run {run['run_id']}"  # no seed tag: its own seed
        by_key[(run["preset"], run["variant"], seed)].append(run)
    kept = []
    for (preset, variant, seed), group in by_key.items():
        group = sorted(group, key=lambda r: r["start_time"], reverse=True)
        kept.append(group[0])
        if len(group) > 1:
            logger.info("%s seed %s%s: %d finished runs, keeping the latest %s, ignoring %s", variant, seed,
                        f" (preset {preset})" if preset else "", len(group), group[0]["run_id"],
                        ", ".join(r["run_id"] for r in group[1:]))
    return kept


def _row(variant: str, preset: str, label: str, runs: Sequence[Mapping[str, Any]], prefix: str = "test_") -> Row:
    mean, std = {}, {}
    for short, _, key, scale in METRICS:
        key = prefix + key[len("test_"):]
        values = np.array([r["metrics"][key] for r in runs if key in r["metrics"]], dtype=float) * scale
        mean[short] = float(values.mean()) if len(values) else math.nan
        std[short] = float(values.std(ddof=1)) if len(values) > 1 else (0.0 if len(values) else math.nan)
    fractions = [r["labelled_fraction"] for r in runs if r["labelled_fraction"] is not None]
    fraction = float(np.mean(fractions)) if fractions else math.nan
    return Row(variant, preset, label, fraction, len(runs), mean, std)


# ---------------------------------------------------------------------------------------------- writing


def _labelled(fraction: float) -> str:
    """``2.0%`` for two-shot rows, ``100%`` for full supervision, ``?`` when not logged."""
    if math.isnan(fraction):
        return "?"
    pct = 100 * fraction
    return "100%" if round(pct, 1) == 100 else f"{pct:.1f}%"


def _cell(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "–"
    if not math.isfinite(mean) or not math.isfinite(std):
        return f"{mean:.1f}"
    return f"{mean:.1f} ± {std:.1f}"


def to_markdown(rows: Sequence[Row]) -> str:
    """The Markdown table: ``| method | labelled | seeds | J&F | J | F | DSC | HD95 |``, cells ``mean ± std``."""
    head = "| method | labelled | seeds | " + " | ".join(name for _, name, _, _ in METRICS) + " |"
    lines = [head, "|" + " --- |" * (3 + len(METRICS))]
    for row in rows:
        cells = [_cell(row.mean[s], row.std[s]) for s, *_ in METRICS]
        lines.append(f"| {row.label} | {_labelled(row.labelled_fraction)} | {row.seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_csv(rows: Sequence[Row], path: str | os.PathLike) -> Path:
    """Write the machine-readable table (separate mean and std columns, full precision) atomically."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(_CSV_COLUMNS)
    for row in rows:
        stats = [f"{v:.6g}" for s, *_ in METRICS for v in (row.mean[s], row.std[s])]
        writer.writerow([row.variant, row.preset, f"{row.labelled_fraction:.6g}", row.seeds, *stats])
    return _write_text(path, buf.getvalue())


def write_markdown(rows: Sequence[Row], path: str | os.PathLike) -> Path:
    """Write :func:`to_markdown` of ``rows`` to ``path`` atomically."""
    return _write_text(path, to_markdown(rows))


def plot(rows: Sequence[Row], path: str | os.PathLike) -> Path:
    """Save grouped bars of J&F, J, F and DSC per method, with std error bars, as PNG (atomically)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    fig = Figure(figsize=(max(6.0, 1.2 * len(rows) + 2), 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    x = np.arange(len(rows))
    width = 0.8 / len(_PLOTTED)
    names = {short: name for short, name, _, _ in METRICS}
    for k, short in enumerate(_PLOTTED):
        means = [r.mean[short] for r in rows]
        stds = [r.std[short] for r in rows]
        ax.bar(x + (k - (len(_PLOTTED) - 1) / 2) * width, means, width, yerr=stds, capsize=2, label=names[short])
    ax.set_xticks(x, [f"{r.label}\n{r.seeds} seed{'s' if r.seeds != 1 else ''}" for r in rows],
                  rotation=30 if len(rows) > 6 else 0, fontsize=8)
    ax.set(ylabel="score (%)", ylim=(0, 100), title="Test scores per method (mean ± std over seeds)")
    fig.legend(loc="outside right upper", fontsize=8)
    out = Path(path)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    return out


def _write_text(path: str | os.PathLike, text: str) -> Path:
    out = Path(path)
    with atomic_path(out) as tmp:
        tmp.write_text(text)
    return out
