"""Boolean settings from the bundle command line, made booleans once for every workflow.

``python -m monai.bundle run ... --resume false`` reaches the config as the string ``'false'``
(``fire`` only parses Python's ``False``), and a non-empty string is true. So the first step of
every workflow's ``initialize`` is :func:`coerce_flags`: every config id that a shipped config
file gives a ``true``/``false`` literal is a boolean id; its value, wherever it came from, is
turned into a bool (``true/false``, ``1/0``, ``yes/no``, ``on/off``) or refused with one line
naming the id. Expressions (``$...``) and references (``@...``) are left to be evaluated.
Consumers then receive real bools and never parse strings themselves.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from stbv_monai.errors import InputError

__all__ = ["boolean_ids", "coerce_flags", "parse_flag"]

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")
_CODE = ("$", "@", "%")


def parse_flag(value: Any, name: str) -> bool:
    """``value`` as a bool; ``name`` is the setting named in the error for anything else."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if isinstance(value, (int, str)) and text in _TRUE + _FALSE:
        return text in _TRUE
    raise InputError(f"--{name}", f"expected true or false (or 1/0), got {value!r}")


def _config_files() -> list[Path]:
    """The bundle's configs and the repository's presets and variants (those present)."""
    from stbv_monai import BUNDLE_ROOT

    root = Path(BUNDLE_ROOT)
    files = sorted((root / "configs").glob("*.yaml"))
    return files + sorted((root.parent / "configs").glob("**/*.yaml"))


def _bool_leaves(config: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(config, dict):
        for key, value in config.items():
            yield from _bool_leaves(value, f"{prefix}#{key}" if prefix else str(key))
    elif isinstance(config, list):
        for i, value in enumerate(config):
            yield from _bool_leaves(value, f"{prefix}#{i}")
    elif isinstance(config, bool):
        yield prefix.lstrip("+")


@functools.lru_cache(maxsize=1)
def boolean_ids() -> frozenset[str]:
    """Ids (``a#b`` form) to which some shipped config file gives a ``true``/``false`` literal."""
    ids: set[str] = set()
    for path in _config_files():
        ids.update(_bool_leaves(yaml.safe_load(path.read_text()) or {}))
    return frozenset(ids)


def coerce_flags(parser: Any = None) -> list[str]:
    """Turn every boolean id of the running bundle's config into a bool (see module doc); the ids changed.

    Args:
        parser: a MONAI ``ConfigParser``; ``None`` finds the running ``ConfigWorkflow``'s.

    Raises:
        InputError: a boolean id holds something that is not a boolean word, e.g. ``--resume flase``.
    """
    from stbv_monai.tracking.params import find_bundle_parser

    parser = parser if parser is not None else find_bundle_parser()
    if parser is None:
        return []
    changed = []
    for name in sorted(boolean_ids()):
        if name not in parser:
            continue
        value = parser[name]
        if isinstance(value, bool) or (isinstance(value, str) and value.startswith(_CODE)):
            continue
        parser[name] = parse_flag(value, name)
        changed.append(name)
    return changed
