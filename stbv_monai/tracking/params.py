"""What a run records about itself: the bundle config it ran with, flattened, and the code version.

MLflow params are flat ``key -> string`` pairs. The config a bundle ran with lives in MONAI's
``ConfigParser`` inside the running ``ConfigWorkflow``, which config expressions cannot name, so
:func:`find_bundle_parser` looks for that workflow on the call stack (MONAI's own ``--tracking``
exports the parser from inside the workflow in the same spirit). Every leaf of the merged config
(files, overlays and command-line overrides) becomes a param: its resolved value where the parser
has already computed a plain one (``output_dir``, ``@lr`` references...), its literal value
otherwise; objects (networks, engines) and unevaluated expressions are left out.
"""

from __future__ import annotations

import inspect
import os
import subprocess
from typing import Any, Iterator

__all__ = ["bundle_params", "find_bundle_parser", "flatten_config", "git_commit", "raw_bundle_config"]

_SIMPLE = (str, int, float, bool, type(None))
_SKIP_ROOTS = ("imports", "_meta_")
_SKIP_KEYS = ("_target_", "_disabled_", "_requires_", "_desc_", "_mode_")
_CODE = ("$", "@", "%")
_UNKNOWN = object()  # not plain, so left out


def find_bundle_parser() -> Any | None:
    """The ``ConfigParser`` of the ``ConfigWorkflow`` that is running the caller (``None`` outside a bundle)."""
    from monai.bundle import ConfigWorkflow

    frame = inspect.currentframe()
    while frame is not None:
        owner = frame.f_locals.get("self")
        if isinstance(owner, ConfigWorkflow):
            return owner.parser
        frame = frame.f_back
    return None


def _is_plain(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    return isinstance(value, _SIMPLE) or isinstance(value, os.PathLike) or type(value).__name__ == "device"


def _leaves(config: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(id, value)`` of every leaf, ids in MONAI's ``a::b::0`` form; lists of plain literals are leaves."""
    from monai.bundle.utils import ID_SEP_KEY

    if isinstance(config, dict):
        for key, value in config.items():
            yield from _leaves(value, f"{prefix}{ID_SEP_KEY}{key}" if prefix else str(key))
    elif isinstance(config, list) and not (_is_plain(config) and not any(_is_code(v) for v in config)):
        for i, value in enumerate(config):
            yield from _leaves(value, f"{prefix}{ID_SEP_KEY}{i}")
    else:
        yield prefix, config


def _is_code(value: Any) -> bool:
    return isinstance(value, str) and value[:1] in _CODE


def flatten_config(raw: dict[str, Any], resolved: dict[str, Any] | None = None) -> dict[str, str]:
    """``{'teacher_stage.iterations': '300', ...}`` from a raw config and the values resolved so far.

    Run lists (``training``, ``initialize``...) and component plumbing (``_target_``...) are left out.
    """
    from monai.bundle.utils import ID_SEP_KEY

    resolved = resolved or {}
    out: dict[str, str] = {}
    for key, value in _leaves(raw):
        parts = key.split(ID_SEP_KEY)
        if not key or parts[0] in _SKIP_ROOTS or parts[-1] in _SKIP_KEYS:
            continue
        if _is_code(value):
            value = _value_of(value, key, raw, resolved)
        elif key in resolved and _is_plain(resolved[key]):
            value = resolved[key]
        if not _is_plain(value):
            continue
        out[key.replace(ID_SEP_KEY, ".")] = str(value)
    return out


def _value_of(code: str, key: str, raw: dict[str, Any], resolved: dict[str, Any], depth: int = 8) -> Any:
    """A reference's or expression's value without evaluating anything: already resolved, or a literal target."""
    from monai.bundle.utils import ID_SEP_KEY

    ref = code[1:].replace("#", ID_SEP_KEY) if code.startswith("@") else key
    if ref in resolved:
        return resolved[ref] if _is_plain(resolved[ref]) else _UNKNOWN
    if not code.startswith("@") or depth == 0:
        return _UNKNOWN
    target: Any = raw
    for part in ref.split(ID_SEP_KEY):
        try:
            target = target[int(part)] if isinstance(target, list) else target[part]
        except (KeyError, IndexError, ValueError, TypeError):
            return _UNKNOWN
    return _value_of(target, ref, raw, resolved, depth - 1) if _is_code(target) else target


def raw_bundle_config() -> dict[str, Any] | None:
    """The merged, unresolved config of the running bundle (what MONAI exports for ``--tracking``)."""
    parser = find_bundle_parser()
    return None if parser is None else parser.get()


def bundle_params() -> dict[str, str]:
    """The running bundle's config as flat MLflow params (empty outside a bundle)."""
    parser = find_bundle_parser()
    if parser is None:
        return {}
    return flatten_config(parser.get(), dict(parser.ref_resolver.resolved_content))


def git_commit(path: str | os.PathLike) -> str | None:
    """The commit the code at ``path`` was checked out at (``None`` outside a git work tree)."""
    try:
        out = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
