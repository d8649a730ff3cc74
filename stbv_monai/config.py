"""Boolean settings from the bundle command line, made booleans once for every workflow.

``python -m monai.bundle run ... --resume false`` reaches the config as the string ``'false'``
(``fire`` only parses Python's ``False``), and a non-empty string is true. So the first step of
every workflow's ``initialize`` is :func:`coerce_flags`: every config id that a shipped config
file gives a ``true``/``false`` literal is a boolean id; its value, wherever it came from, is
turned into a bool (``true/false``, ``1/0``, ``yes/no``, ``on/off``) or refused with one line
naming the id. Expressions (``$...``) and references (``@...``) are left to be evaluated.
Consumers then receive real bools and never parse strings themselves.

Numeric settings that cannot work (``--batch_size 0``, ``--teacher_stage#iterations -5``,
``--spatial_size [0, 0]``) are refused by :func:`check_settings`, right after, before anything
is read or written.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from stbv_monai.errors import InputError

__all__ = ["SETTING_RULES", "boolean_ids", "check_settings", "coerce_flags", "parse_flag"]

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


#: ``config id: (kind, least value)`` for numeric settings whose wrong values fail late or silently
#: (a negative iteration count ran one pass). Kinds: ``int`` (an integer >= least), ``optional_int``
#: (``null`` or that), ``float`` (a number >= least; a tiny least means "> 0"), ``size``
#: (``[height, width]``, integers >= least), ``prob`` (a number in [0, 1]).
SETTING_RULES: dict[str, tuple[str, float]] = {
    "batch_size": ("int", 1),
    "num_workers": ("int", 0),
    "max_skip": ("int", 1),
    "spatial_size": ("size", 1),
    "lr": ("float", 1e-12),
    "checkpoint_interval": ("int", 1),
    "val_interval": ("int", 0),
    "tracking_log_every": ("int", 1),
    "pretrain_stage#iterations": ("int", 1),
    "teacher_stage#iterations": ("int", 1),
    "student_stage#iterations": ("int", 1),
    "propagation#mem_every": ("int", 1),
    "propagation#top_k": ("optional_int", 1),
    "propagation#max_memory_frames": ("optional_int", 1),
    "stcs#weight": ("float", 0.0),
    "stcs#temperature": ("float", 1e-12),
    "sda#cutmix_prob": ("prob", 0.0),
    "synthetic_stills#count": ("int", 1),
}


def check_settings(parser: Any = None) -> list[str]:
    """Refuse a numeric setting of :data:`SETTING_RULES` that cannot work; the ids checked.

    Args:
        parser: a MONAI ``ConfigParser``; ``None`` finds the running ``ConfigWorkflow``'s.

    Raises:
        InputError: one line naming the setting and the problem, e.g.
            ``--batch_size: must be an integer >= 1, got 0``.
    """
    from stbv_monai.tracking.params import find_bundle_parser

    parser = parser if parser is not None else find_bundle_parser()
    if parser is None:
        return []
    checked = []
    for name, (kind, least) in SETTING_RULES.items():
        if name not in parser:
            continue
        value = parser[name]
        if isinstance(value, str) and value.startswith(_CODE):
            value = parser.get_parsed_content(name)
        _check_value(name, value, kind, least)
        checked.append(name)
    return checked


def _check_value(name: str, value: Any, kind: str, least: float) -> None:
    if kind == "optional_int" and value is None:
        return
    if kind == "size":
        ok = isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_int(v) and v >= least for v in value)
        if not ok:
            raise InputError(f"--{name}", f"must be two integers >= {int(least)} ([height, width]), got {value!r}")
        return
    if kind == "prob":
        if not (_is_number(value) and 0.0 <= value <= 1.0):
            raise InputError(f"--{name}", f"must be a probability in [0, 1], got {value!r}")
        return
    if kind in ("int", "optional_int"):
        if not (_is_int(value) and value >= least):
            raise InputError(f"--{name}", f"must be an integer >= {int(least)}, got {value!r}")
        return
    if not (_is_number(value) and value >= least):
        bound = "> 0" if 0 < least < 1e-6 else f">= {least:g}"
        raise InputError(f"--{name}", f"must be a number {bound}, got {value!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
