"""Lazy package exports (PEP 562), so importing a package costs only what is used and cannot be circular."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, namespace: dict[str, Any], exports: Mapping[str, Sequence[str]]
                 ) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """``__all__``, ``__getattr__`` and ``__dir__`` for ``package`` exporting ``{module: names}`` on first use.

    Use as ``__all__, __getattr__, __dir__ = lazy_exports(__name__, globals(), {...})``; a name is
    imported from its module when first read and then kept in ``namespace``.
    """
    where = {name: module for module, names in exports.items() for name in names}

    def getattr_(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where[name]), name)
        namespace[name] = value
        return value

    def dir_() -> list[str]:
        return sorted(list(namespace) + list(where))

    return sorted(where), getattr_, dir_
