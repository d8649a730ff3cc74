"""Helpers for values that arrive from the bundle command line."""

from __future__ import annotations

__all__ = ["as_flag"]

_FALSE = ("false", "0", "no", "off", "none", "null", "")


def as_flag(value: object) -> bool:
    """``--resume false`` reaches the config as the string ``'false'`` (fire parses only ``False``)."""
    return str(value).strip().lower() not in _FALSE
