"""One error type for bad user input, so every entry point reports ``<file>: <problem>``."""

from __future__ import annotations

import os
import sys

__all__ = ["InputError", "find_input_error", "install_excepthook"]


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


def install_excepthook() -> None:
    """Report an uncaught :class:`InputError` as one line on stderr instead of a stack trace.

    Called first by every bundle workflow (``initialize``) and CLI script. Set ``STBV_TRACEBACK=1``
    to see the full trace.
    """
    previous = sys.excepthook

    def hook(exc_type, exc, tb):  # noqa: ANN001 - sys.excepthook signature
        found = find_input_error(exc)
        if found is None or os.environ.get("STBV_TRACEBACK"):
            previous(exc_type, exc, tb)
            return
        _close_progress_bars()  # an open tqdm bar would redraw after the message
        print(f"error: {found}", file=sys.stderr)

    sys.excepthook = hook


def _close_progress_bars() -> None:
    try:
        from tqdm import tqdm
    except ImportError:
        return
    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()
