"""Stop a run cleanly on SIGTERM or SIGINT: checkpoint, runs marked KILLED, one line on how to resume.

Slurm, Docker, systemd and Kubernetes stop a job with SIGTERM (and SIGKILL a little later).
Python's default for SIGTERM is to die on the spot, leaving MLflow runs RUNNING and the work since
the last checkpoint lost. :func:`install_stop_signals` replaces it (and Ctrl-C's SIGINT):

* while a trainer runs (:class:`StopOnSignal` attached), the signal is noted and the trainer
  raises :class:`~stbv_monai.errors.StopRequested` at the end of the current iteration, so
  MONAI's ``CheckpointSaver`` writes ``checkpoint_final.pt`` at exactly that iteration;
* anywhere else (pseudo-labelling, evaluation: their finished videos are already on disk), or on
  a second signal, it raises at once.

The run tree then marks the stage and its parent KILLED, the process exits with ``128 + signum``
and prints one line saying how to continue.
"""

from __future__ import annotations

import atexit
import signal
import sys
import threading
from typing import Any

from ignite.engine import Engine, Events

from stbv_monai.errors import StopRequested

__all__ = ["StopOnSignal", "install_stop_signals"]

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class _State:
    installed = False
    running: list[Engine] = []  # trainers with StopOnSignal, innermost last
    requested: int | None = None
    stopped: StopRequested | None = None


def install_stop_signals() -> bool:
    """Route SIGTERM and SIGINT to a clean stop (see module doc); ``False`` outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return False
    for sig in _SIGNALS:
        signal.signal(sig, _on_signal)
    if not _State.installed:
        atexit.register(_say_how_to_resume)
        _State.installed = True
    return True


def _on_signal(signum: int, frame: Any) -> None:  # noqa: ARG001 - signal handler signature
    if _State.running and _State.requested is None:
        _State.requested = signum  # the trainer stops at the end of this iteration
        return
    _stop(StopRequested(signum))


def _stop(exc: StopRequested) -> None:
    _State.stopped = exc
    raise exc


def _say_how_to_resume() -> None:
    if _State.stopped is None:
        return
    from stbv_monai.errors import _close_progress_bars

    _close_progress_bars()
    what = "its checkpoint is saved" if _State.stopped.where else "finished work is kept"
    print(f"{_State.stopped}: {what}; run the same command with --resume true to continue", file=sys.stderr)


class StopOnSignal:
    """Make a trainer stop at the end of its current iteration when a stop signal has arrived."""

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.COMPLETED, self._ended)

    def _started(self, engine: Engine) -> None:
        _State.running.append(engine)

    def _ended(self, engine: Engine) -> None:
        if engine in _State.running:
            _State.running.remove(engine)

    def __call__(self, engine: Engine) -> None:
        if _State.requested is None:
            return
        signum, _State.requested = _State.requested, None
        self._ended(engine)
        total = (engine.state.epoch_length or 0) * (engine.state.max_epochs or 0)
        where = f"iteration {engine.state.iteration}" + (f" of {total}" if total else "")
        _stop(StopRequested(signum, where))
