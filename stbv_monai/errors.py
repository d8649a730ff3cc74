"""One error type for bad user input, so every entry point reports ``<file>: <problem>``."""

from __future__ import annotations

import os
import sys

__all__ = ["InputError", "StopRequested", "find_input_error", "innermost_error", "install_excepthook", "uncaught_error"]


class InputError(ValueError):
    """Bad user input: names the offending file (or object) and the problem in one line.

    Args:
        source: the file, folder or datalist entry at fault.
        problem: what is wrong with it, phrased for the user.
    """

    def __init__(self, source: object, problem: str) -> None:
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")


class StopRequested(SystemExit):
    """A run stopped on purpose by SIGTERM or SIGINT (:mod:`stbv_monai.handlers.stop_on_signal`).

    A ``SystemExit``, so nothing that catches ``Exception`` swallows it and the process exits
    with ``128 + signum``, the status of a process killed by that signal, after its ``atexit``
    handlers (MLflow runs marked KILLED, the output folder's lock given back).

    Args:
        signum: the signal received.
        where: what was running, for the message (e.g. ``iteration 57 of 300``).
    """

    def __init__(self, signum: int, where: str = "") -> None:
        super().__init__(128 + int(signum))
        self.signum, self.where = int(signum), where

    def __str__(self) -> str:
        import signal

        name = signal.Signals(self.signum).name
        return f"stopped by {name}" + (f" at {self.where}" if self.where else "")


def innermost_error(exc: BaseException) -> BaseException:
    """The root cause of ``exc``: the end of its ``__cause__``/``__context__`` chain.

    MONAI's config parser wraps an error in "Failed to evaluate ConfigExpression ..."; the user
    (and MLflow's ``error`` tag) want what went wrong underneath.
    """
    seen = {id(exc)}
    while True:
        nxt = exc.__cause__ or exc.__context__
        if nxt is None or id(nxt) in seen:
            return exc
        seen.add(id(nxt))
        exc = nxt


def find_input_error(exc: BaseException | None) -> InputError | None:
    """The first :class:`InputError` in an exception's cause/context chain, if any.

    Libraries such as MONAI's config parser wrap our errors in their own; the user's problem is
    the innermost ``InputError``, not the wrapper.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, InputError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


_UNCAUGHT: list[BaseException] = []  # the exception that ended the process, for atexit handlers


def uncaught_error() -> BaseException | None:
    """The uncaught exception the process is ending with (seen by :func:`install_excepthook`'s hook), if any."""
    return _UNCAUGHT[-1] if _UNCAUGHT else None


def install_excepthook() -> None:
    """Report an uncaught :class:`InputError` as one line on stderr instead of a stack trace.

    Called first by every bundle workflow (``initialize``) and CLI script; installing it again
    is a no-op, so the process has one hook. It also keeps the exception for
    :func:`uncaught_error` (the MLflow run tree tags a failed run with it at exit). Set
    ``STBV_TRACEBACK=1`` to see the full trace.
    """
    if getattr(sys.excepthook, "_stbv", False):
        return
    previous = sys.excepthook

    def hook(exc_type, exc, tb):  # noqa: ANN001 - sys.excepthook signature
        _UNCAUGHT.append(exc)
        found = find_input_error(exc)
        if found is None or os.environ.get("STBV_TRACEBACK"):
            previous(exc_type, exc, tb)
            return
        _close_progress_bars()  # an open tqdm bar would redraw after the message
        print(f"error: {found}", file=sys.stderr)

    hook._stbv = True  # type: ignore[attr-defined]
    sys.excepthook = hook


def _close_progress_bars() -> None:
    try:
        from tqdm import tqdm
    except ImportError:
        return
    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()
