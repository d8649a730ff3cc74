"""Where runs go: the tracking URI a workflow logs to, and the fallback when a server is unreachable.

Precedence: the URI given in the config or on the command line (``--tracking_uri``), then
``MLFLOW_TRACKING_URI``, then an embedded SQLite store under the workflow's ``output_dir``
(MLflow 3.13+ refuses plain-folder stores, so MONAI and we both default to SQLite). A remote
server that does not answer is reported once and replaced by that local store, so a long
training is never lost to a network problem; ``scripts/compare_runs.py`` merges both stores.
"""

from __future__ import annotations

import logging
import os
import urllib.error
import urllib.request
from pathlib import Path

__all__ = ["artifact_location", "default_uri", "probe", "resolve_uri"]

logger = logging.getLogger(__name__)


def path_to_sqlite_uri(path: str | os.PathLike) -> str:
    """``sqlite:///`` + an absolute path (MONAI's helper, imported late: MONAI is slow to import)."""
    from monai.utils import path_to_sqlite_uri as to_uri

    return to_uri(path)


def default_uri(output_dir: str | os.PathLike) -> str:
    """The embedded store of a workflow: ``sqlite:///<output_dir>/mlruns.db``."""
    return path_to_sqlite_uri(os.path.join(os.path.abspath(output_dir), "mlruns.db"))


def artifact_location(uri: str) -> str | None:
    """Artifacts of a SQLite store live in ``mlruns/`` next to the database (MONAI's layout); servers decide themselves."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri[len("sqlite:///"):]).parent / "mlruns").resolve().as_uri()


def probe(uri: str, timeout: float = 5.0) -> str | None:
    """Why an ``http(s)`` tracking server cannot be used (``None``: it answers; other schemes are not probed).

    MLflow's own client retries with back-off for minutes before failing; one short request to the
    server's ``/health`` endpoint decides up front. Any HTTP answer counts: authentication or a
    proxy without ``/health`` is for MLflow to sort out.
    """
    if not uri.startswith(("http://", "https://")):
        return None
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return str(getattr(exc, "reason", exc))


def _local_path_uri(value: str) -> str:
    """A plain path or ``file://`` URI as a SQLite store: ``x.db`` itself, or ``<folder>/mlruns.db``."""
    path = os.path.abspath(value[len("file://"):] if value.startswith("file://") else value)
    return path_to_sqlite_uri(path if path.endswith(".db") else os.path.join(path, "mlruns.db"))


def resolve_uri(uri: str | None, output_dir: str | os.PathLike) -> tuple[str, str | None]:
    """The URI to log to and, when a given server was unreachable, the sentence saying so (else ``None``).

    A plain folder (what older MLflow took) becomes a SQLite store in it rather than an error.
    """
    wanted = uri or os.environ.get("MLFLOW_TRACKING_URI") or default_uri(output_dir)
    if wanted.startswith("file:") or "://" not in wanted:
        wanted = _local_path_uri(wanted)
    problem = probe(wanted)
    if problem is None:
        return wanted, None
    local = default_uri(output_dir)
    return local, (f"MLflow tracking server {wanted} is unreachable ({problem}); "
                   f"logging to the local store {local} instead")
