"""One error type for bad user input, so every entry point reports ``<file>: <problem>``."""

from __future__ import annotations

__all__ = ["InputError"]


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
