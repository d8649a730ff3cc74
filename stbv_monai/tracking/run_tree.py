"""The run tree of one workflow invocation: a parent MLflow run, a child run per stage.

MONAI's ``MLFlowHandler`` opens one run per engine and finds it again by name; a three-stage
training needs one parent run that outlives its engines (stage 2 has no trainer, evaluation is a
fourth engine), children that say which stage failed, and a store that survives a dead server.
:class:`RunTree` owns that lifecycle; the per-iteration numbers of an engine are logged into its
current run by :class:`stbv_monai.handlers.StageTracker`, a ``MLFlowHandler``.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from stbv_monai.errors import StopRequested, innermost_error, install_excepthook, uncaught_error
from stbv_monai.tracking.params import bundle_params, git_commit, raw_bundle_config
from stbv_monai.tracking.store import artifact_location, resolve_uri

__all__ = ["RECORD_NAME", "RunTree", "metric_key"]

logger = logging.getLogger(__name__)

RECORD_NAME = "mlflow_run.json"
_PARENT_TAG = "mlflow.parentRunId"
_MAX_BATCH = 100  # MLflow's limit on params per log_batch call


#: MLflow key prefix of each evaluation protocol's test metrics (``test_JF``, ``test_first_JF``).
PROTOCOL_PREFIXES = {"labelled": "test_", "first_frame": "test_first_"}


def metric_key(name: str, prefix: str = "") -> str:
    """``test_J``, ``test_F``, ``test_JF``, ``test_dice``, ``test_hd95``: J/F keep their case, the rest is lower."""
    return prefix + (name if name in ("J", "F", "JF") else name.lower())


class RunTree:
    """A parent run per invocation (continued with ``resume``), a child run per :meth:`stage`.

    Args:
        output_dir: holds the default SQLite store and ``mlflow_run.json``, the parent run's id.
        tracking_uri: where to log (``None``: ``MLFLOW_TRACKING_URI``, then SQLite under ``output_dir``).
        experiment_name: the MLflow experiment every variant and seed goes to, to be compared.
        run_name: the parent run's name.
        workflow: ``training``, ``evaluate`` or ``inference``; a tag ``compare_runs.py`` filters on.
        tags: tags of the parent and every child (variant, preset, seed, dataset).
        params: params added to the flattened bundle config; a callable value is called when the run
            opens (so reading data for it cannot stop a workflow before its run exists) and skipped
            with a warning if it raises.
        enabled: ``False`` logs nothing.

    Only the main process (rank 0 under ``torchrun``) logs; elsewhere every method just runs the stage.
    An MLflow failure is reported once and tracking stops; the workflow itself never fails for it.
    """

    def __init__(self, output_dir: str | os.PathLike, tracking_uri: str | None = None,
                 experiment_name: str = "stbv-monai", run_name: str | None = None, workflow: str = "training",
                 tags: Mapping[str, Any] | None = None, params: Mapping[str, Any] | None = None,
                 enabled: bool = True) -> None:
        self.output_dir = Path(output_dir)
        self.requested_uri = tracking_uri or None
        self.experiment_name, self.run_name, self.workflow = experiment_name, run_name, workflow
        self.tags = {str(k): str(v) for k, v in (tags or {}).items() if v is not None}
        self._param_sources = dict(params or {})
        self.params: dict[str, str] = {}
        self.enabled = enabled
        self.client: Any = None
        self.uri: str | None = None
        self.experiment_id: str | None = None
        self.parent_id: str | None = None
        self.child_id: str | None = None
        self.resume = False
        self._parent_params: set[str] = set()

    # ------------------------------------------------------------------ lifecycle
    @property
    def active(self) -> bool:
        """Whether this process logs (tracking on, rank 0, MLflow working, a parent run open)."""
        return self.parent_id is not None and self.client is not None

    @property
    def run_id(self) -> str | None:
        """The run numbers go to now: the running stage's child, else the parent."""
        return self.child_id or self.parent_id

    def begin(self, resume: bool = False) -> str | None:
        """Open the parent run (``resume``: continue the one recorded in ``output_dir``); its id or ``None``.

        ``resume`` also lets :meth:`stage` skip stages that say they are done.
        """
        from stbv_monai.engines.distributed import is_main_process

        self.resume = self.resume or bool(resume)
        if self.parent_id or not self.enabled or not is_main_process():
            return self.parent_id
        self._guard(self._open, resume)
        if self.parent_id:
            install_excepthook()  # the process's one hook keeps the error that ends it (uncaught_error)
            atexit.register(self._at_exit)
        return self.parent_id

    def _open(self, resume: bool) -> None:
        import mlflow

        uri, problem = resolve_uri(self.requested_uri, self.output_dir)
        if problem:
            logger.warning(problem)
            self.tags["fallback_from"] = self.requested_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
        if uri.startswith("sqlite:///"):
            Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        client = mlflow.MlflowClient(tracking_uri=uri)
        experiment = client.get_experiment_by_name(self.experiment_name)
        self.experiment_id = (experiment.experiment_id if experiment else
                              client.create_experiment(self.experiment_name, artifact_location=artifact_location(uri)))
        commit = git_commit(Path(__file__).resolve().parents[2])
        tags = {**self.tags, "stbv.workflow": self.workflow, **({"git_commit": commit,
                "mlflow.source.git.commit": commit} if commit else {})}
        previous = self._recorded(uri) if resume else None
        if previous:
            _end_orphans(client, self.experiment_id, previous)
            client.update_run(previous, status="RUNNING")
            self._parent_params = set(client.get_run(previous).data.params)
            self.parent_id = previous
            logger.info("MLflow: continuing run %s in %s", previous, uri)
        else:
            run = client.create_run(self.experiment_id, tags=tags, run_name=self.run_name)
            self.parent_id = run.info.run_id
            logger.info("MLflow: run %s (experiment %r) in %s", self.parent_id, self.experiment_name, uri)
        self.client, self.uri, self.tags = client, uri, tags
        self.params = _evaluate_params(self._param_sources)
        self._write_record()
        self._log_config(self.parent_id)

    def end(self, status: str = "FINISHED") -> None:
        """Close the parent run (and a child left open) with ``status``; called by the workflow's ``finalize``."""
        if not self.active:
            return
        if self.child_id:
            self._guard(self.client.set_terminated, self.child_id, status)
            self.child_id = None
        self._guard(self.client.set_terminated, self.parent_id, status)
        self.parent_id = None

    def _at_exit(self) -> None:
        if self.active:  # the workflow did not reach finalize: an uncaught error or an interrupt
            error = uncaught_error()
            if error is not None:
                self._tag_error(self.parent_id, error)
            self.end(_status_after(error))

    # ------------------------------------------------------------------ stages
    def stage(self, name: str, fn: Callable[[], Any], metrics: Callable[[Any], Mapping[str, float]] | None = None,
              artifacts: Iterable[str | os.PathLike | None] | Callable[[], Iterable] = (),
              to_parent: bool = False, child: bool = True, done: Callable[[], bool] | None = None) -> Any:
        """Run ``fn`` as stage ``name`` in a child run; log ``metrics(result)`` and the existing ``artifacts``.

        A stage that raises ends its child run and the parent FAILED (KILLED on SIGTERM/Ctrl-C), the
        root cause as the ``error`` tag, and the error propagates. ``to_parent`` copies the metrics
        onto the parent run (the test metrics, which runs are compared by); ``child=False`` logs into
        the parent itself (a one-stage workflow such as ``evaluate``). On resume, a stage whose
        ``done()`` is true is skipped (``None`` returned): nothing runs and nothing is logged again.
        """
        if self.resume and done is not None and done():
            logger.info("%s: already done, skipped (resume)", name)
            return None
        self.begin()
        if not self.active:
            return fn()
        if child:
            self._guard(self._open_child, name)
        try:
            result = fn()
        except BaseException as exc:
            status = _status_after(exc)
            for run_id in (self.child_id, self.parent_id):
                self._tag_error(run_id, exc)
            self.end(status)
            raise
        values = dict(metrics(result)) if metrics is not None else {}
        if values:
            self.log_metrics(values)
            if to_parent:
                self.log_metrics(values, run_id=self.parent_id)
        self.log_artifacts(artifacts() if callable(artifacts) else artifacts)
        if self.child_id:
            self._guard(self.client.set_terminated, self.child_id, "FINISHED")
        self.child_id = None
        return result

    def _open_child(self, name: str) -> None:
        tags = {**self.tags, _PARENT_TAG: self.parent_id, "stbv.stage": name}
        self.child_id = self.client.create_run(self.experiment_id, tags=tags, run_name=name).info.run_id
        params = bundle_params()  # more of the config is resolved now than when the parent opened
        self._log_params(self.child_id, {**params, **self.params})
        self._log_parent_params(params)

    # ------------------------------------------------------------------ logging
    def log_metrics(self, values: Mapping[str, Any], step: int | None = None, run_id: str | None = None) -> None:
        """Log numeric ``values`` (others are skipped) to ``run_id`` (default: the current run)."""
        if not self.active:
            return
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        batch = [Metric(k, float(v), stamp, step or 0) for k, v in values.items() if _is_number(v)]
        for i in range(0, len(batch), 1000):
            self._guard(self.client.log_batch, run_id or self.run_id, metrics=batch[i:i + 1000])

    def log_artifacts(self, paths: Iterable[str | os.PathLike | None], artifact_path: str | None = None,
                      run_id: str | None = None) -> None:
        """Upload the files and folders of ``paths`` that exist (missing ones are skipped: e.g. no best checkpoint)."""
        if not self.active:
            return
        for path in paths:
            if path is None or not os.path.exists(path):
                continue
            upload = self.client.log_artifacts if os.path.isdir(path) else self.client.log_artifact
            sub = os.path.join(artifact_path or "", Path(path).name) if os.path.isdir(path) else artifact_path
            self._guard(upload, run_id or self.run_id, str(path), sub)

    def _log_parent_params(self, params: Mapping[str, str]) -> None:
        """Add the params the parent does not have yet (MLflow refuses to change one, e.g. ``resume`` on resume)."""
        new = {k: v for k, v in {**params, **self.params}.items() if k not in self._parent_params}
        self._log_params(self.parent_id, new)
        self._parent_params.update(new)

    def _log_params(self, run_id: str, params: Mapping[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k[:250], v[:6000]) for k, v in params.items()]
        for i in range(0, len(items), _MAX_BATCH):
            self._guard(self.client.log_batch, run_id, params=items[i:i + _MAX_BATCH])

    def _log_config(self, run_id: str) -> None:  # noqa: ARG002 - the parent's
        """The flattened config as params; the merged config and those params as ``config/`` artifacts."""
        params = bundle_params()
        self._log_parent_params(params)
        raw = raw_bundle_config()
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "config"
            folder.mkdir()
            (folder / "params.json").write_text(json.dumps({**params, **self.params}, indent=1, sort_keys=True))
            if raw is not None:
                (folder / "config.json").write_text(json.dumps(raw, indent=1, default=str))
            self._guard(self.client.log_artifacts, run_id, str(folder), "config")

    def _tag_error(self, run_id: str | None, exc: BaseException) -> None:
        if run_id:
            cause = innermost_error(exc)
            self._guard(self.client.set_tag, run_id, "error", f"{type(cause).__name__}: {cause}"[:5000])

    # ------------------------------------------------------------------ bookkeeping
    def _recorded(self, uri: str) -> str | None:
        path = self.output_dir / RECORD_NAME
        if not path.is_file():
            return None
        record = json.loads(path.read_text())
        return record.get("run_id") if record.get("tracking_uri") == uri else None

    def _write_record(self) -> None:
        from stbv_monai.data.io import atomic_path

        record = {"tracking_uri": self.uri, "experiment_id": self.experiment_id, "run_id": self.parent_id}
        self.output_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.output_dir / RECORD_NAME) as tmp:
            tmp.write_text(json.dumps(record, indent=1))

    def _guard(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call an MLflow function; on the first failure warn once and stop tracking for this invocation."""
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - tracking must never end a training
            if self.client is not None or self.parent_id is not None or self.enabled:
                logger.warning("MLflow tracking failed and is off for the rest of this run: %s: %s",
                               type(exc).__name__, exc)
            self.client, self.parent_id, self.child_id, self.enabled = None, None, None, False
            return None


def _status_after(exc: BaseException | None) -> str:
    """A run ended by ``exc``: KILLED when stopped on purpose (a signal, Ctrl-C), else FAILED."""
    return "KILLED" if isinstance(exc, (KeyboardInterrupt, StopRequested)) else "FAILED"


def _end_orphans(client: Any, experiment_id: str, parent_id: str) -> None:
    """Stage runs a killed process left RUNNING under ``parent_id`` become KILLED (the resumed stage gets a new one)."""
    query = f"tags.`mlflow.parentRunId` = '{parent_id}' and attributes.status = 'RUNNING'"
    for run in client.search_runs([experiment_id], filter_string=query):
        client.set_terminated(run.info.run_id, "KILLED")


def _evaluate_params(sources: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    for key, value in sources.items():
        try:
            out[str(key)] = str(value() if callable(value) else value)
        except Exception as exc:  # noqa: BLE001 - a param is not worth a failed run; the stage will say what is wrong
            logger.warning("MLflow param %r not logged: %s: %s", key, type(exc).__name__, exc)
    return out


def _is_number(value: Any) -> bool:
    try:
        return value is not None and float(value) == float(value) or False
    except (TypeError, ValueError):
        return False
