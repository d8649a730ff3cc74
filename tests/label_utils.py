"""Helpers for the MONAI Label app tests: a studies folder, a real server process, label files."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stbv_monai import REPO_ROOT
from stbv_monai.data import write_mask, write_video

APP_DIR = Path("stbv_monai") / "label"  # relative to the repository root, as the README's command
MONAILABEL = Path(sys.executable).with_name("monailabel")
SPACING = (0.5, 0.5)


def write_studies(folder: Path, videos: dict[str, np.ndarray]) -> Path:
    """``folder/<id>.nii.gz`` for each ``(T, H, W)`` video."""
    for name, frames in videos.items():
        write_video(folder / f"{name}.nii.gz", frames, spacing=SPACING)
    return folder


def write_label(path: Path, mask: np.ndarray) -> str:
    """A ``(T, H, W)`` mask video as NIfTI, with the studies' spacing."""
    return str(write_mask(path, mask, spacing=SPACING))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    """A ``monailabel start_server`` subprocess in its own process group."""

    process: subprocess.Popen
    url: str
    log: Path

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """SIGTERM the process group (server and any train subprocess), SIGKILL after 15 s."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=15)


def start_server(studies: Path, workdir: Path, conf: dict[str, str],
                 env: dict[str, str] | None = None) -> ServerProcess:
    """Start the app as the README documents, on a free loopback port; logs go to ``workdir/server.log``.

    ``OMP_NUM_THREADS=1``: on a shared 2-core machine torch's thread pool contends with other jobs
    and tiny test videos run far slower with 2 threads than with 1. ``env`` adds variables (e.g.
    ``TMPDIR``, to watch the server's temporary files).
    """
    port = free_port()
    log_config = workdir / "logging.json"
    log_config.write_text(json.dumps({
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "[%(asctime)s] [%(levelname)s] (%(name)s) %(message)s"}},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stdout"}},
        "root": {"level": "INFO", "handlers": ["console"]},
    }))
    cmd = [str(MONAILABEL), "start_server", "--app", str(APP_DIR), "--studies", str(studies),
           "--host", "127.0.0.1", "--port", str(port), "--log_config", str(log_config)]
    for key, value in conf.items():
        cmd += ["--conf", key, value]
    # the `monailabel` script runs `$MONAILABEL_PYEXE -m monailabel.main` (default: `python` on PATH)
    environ = {**os.environ, "MONAILABEL_PYEXE": sys.executable, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
               "MONAI_LABEL_SESSION_PATH": str(workdir / "sessions"), **(env or {})}
    log = workdir / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=environ, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    return ServerProcess(proc, f"http://127.0.0.1:{port}", log)


def wait_until_serving(server: ServerProcess, client, timeout: float = 120.0) -> None:
    """Poll ``GET /info/`` until it answers; fail with the log tail if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            client.info()
            return
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"server not serving after {timeout:.0f}s:\n{server.log_tail()}")
