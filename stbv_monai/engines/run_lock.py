"""One run at a time per output folder: ``<output_dir>/run.lock`` holds the writer's pid and host.

Two trainings into one ``--output_dir`` delete each other's checkpoints and pseudo-labels. Every
workflow takes the folder's lock in ``initialize``, before it reads or writes anything else, and
gives it back when the process exits. A lock whose process is gone (``kill -9``, a lost node on
this host) is stale: the next run takes the folder over, and says so. A lock from another host
cannot be checked from here, so it is honoured until someone removes it.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from stbv_monai.errors import InputError

__all__ = ["LOCK_NAME", "lock_output_dir"]

logger = logging.getLogger(__name__)

LOCK_NAME = "run.lock"
_HELD: dict[Path, dict[str, Any]] = {}


def _me() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": _start_time(os.getpid()),
            "since": time.strftime("%Y-%m-%d %H:%M:%S")}


def _start_time(pid: int) -> float | None:
    """When process ``pid`` started (tells a reused pid from the locker), or ``None`` if unknown."""
    try:
        import psutil

        return round(psutil.Process(pid).create_time(), 2)
    except Exception:  # noqa: BLE001 - no psutil, or no such process
        return None


def _alive(holder: dict[str, Any]) -> bool:
    """Whether the run that wrote ``holder`` still runs (always ``True`` for another host's)."""
    if holder.get("host") != socket.gethostname():
        return True
    pid = int(holder.get("pid", -1))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    started = _start_time(pid)
    return holder.get("started") is None or started is None or abs(started - holder["started"]) < 1.0


def _read(path: Path) -> dict[str, Any] | None:
    try:
        holder = json.loads(path.read_text())
        return holder if isinstance(holder, dict) else {}
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # unreadable: treated as stale on this host


def _create(path: Path, record: dict[str, Any]) -> bool:
    """Write the lock if no one holds it (``O_EXCL``: of two runs starting together, one wins)."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as fh:
        json.dump(record, fh)
    return True


def lock_output_dir(output_dir: str | os.PathLike) -> Path | None:
    """Take ``output_dir``'s lock for this process (creating the folder); its path.

    Under ``torchrun`` only rank 0 (``RANK``) takes it: the other ranks are the same run.
    Taking it again in the same process is a no-op.

    Raises:
        InputError: another live run holds the folder; the message names its pid, host and start.
    """
    if int(os.environ.get("RANK", "0")) != 0:
        return None
    folder = Path(output_dir)
    path = (folder / LOCK_NAME).resolve()
    if path in _HELD:
        return path
    folder.mkdir(parents=True, exist_ok=True)
    me = _me()
    for _ in range(3):
        if _create(path, me):
            _HELD[path] = me
            atexit.register(release, path)
            return path
        holder = _read(path)
        if holder is None:
            continue  # released between our two looks
        if holder.get("host", socket.gethostname()) == socket.gethostname() and holder.get("pid") == os.getpid():
            _HELD[path] = holder
            return path
        if holder and _alive(holder):
            raise InputError(folder, f"another run is writing here: pid {holder.get('pid')} on "
                                     f"{holder.get('host')} since {holder.get('since')}; wait for it, stop it, or "
                                     f"give another --output_dir (if that run is gone, delete {path})")
        logger.warning("%s: taking over from a run that is no longer running (pid %s on %s since %s)",
                       folder, holder.get("pid"), holder.get("host"), holder.get("since"))
        path.unlink(missing_ok=True)
    raise InputError(folder, f"could not take {path}: other runs keep taking it")


def release(path: str | os.PathLike) -> None:
    """Give back a lock this process holds (registered with ``atexit``)."""
    path = Path(path)
    mine = _HELD.pop(path, None)
    if mine is not None and (_read(path) or {}).get("pid") == mine["pid"]:
        path.unlink(missing_ok=True)
