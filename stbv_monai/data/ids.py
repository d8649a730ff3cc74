"""Video ids: the one name under which every output of a video is written and found again.

Pseudo-labels, predictions, overlays, per-video report rows and previews are all named by a
video's id. An id must be unique within a datalist, or two videos overwrite each other's
outputs (``siteA/images/bus_0000.nii.gz`` and ``siteB/images/bus_0000.nii.gz``):

* when every video of a datalist has a distinct file name, the id is that file name without
  its video suffix (``bus_0000``), as it always was, so existing outputs keep their names;
* otherwise every video's id is its path relative to the datalist's folder, suffix stripped,
  folders joined by ``__`` and ``..`` spelled ``up`` (``siteA__images__bus_0000``).

:func:`~stbv_monai.data.load_datalist` records the id in each entry as ``id``; consumers call
:func:`entry_id`, which falls back to the file name for entries built by hand.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from stbv_monai.data.io import video_id
from stbv_monai.errors import InputError

__all__ = ["ID_SEPARATOR", "assign_ids", "entry_id", "legacy_id", "relative_id"]

#: Joins the folders of a relative path in an id (``/`` cannot be part of a file name).
ID_SEPARATOR = "__"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def entry_id(entry: Mapping[str, Any]) -> str:
    """The id of a datalist entry: the ``id`` recorded by ``load_datalist``, else its file name's."""
    return str(entry.get("id") or video_id(entry["image"]))


def legacy_id(entry: Mapping[str, Any]) -> str:
    """The name outputs had before ids were unique: the video's file name without suffix."""
    return video_id(entry["image"])


def relative_id(image: str | os.PathLike, base: str | os.PathLike) -> str:
    """``base/siteA/images/bus_0000.nii.gz`` -> ``siteA__images__bus_0000``, safe as a file name."""
    rel = Path(os.path.relpath(os.path.normpath(os.path.join(base, image)), os.path.normpath(base)))
    parts = [*rel.parts[:-1], video_id(rel.name)]
    safe = ["up" if p == ".." else _UNSAFE.sub("_", p).lstrip(".") or "_" for p in parts]
    return ID_SEPARATOR.join(safe)


def assign_ids(images: Iterable[str], base: str | os.PathLike, where: object) -> dict[str, str]:
    """Ids of a datalist's videos, keyed by normalised absolute path (see the module docstring).

    Args:
        images: every ``image`` path of the datalist, all splits (relative to ``base`` or absolute).
        base: the datalist's folder.
        where: the datalist, named in the error.

    Raises:
        InputError: two different videos whose relative paths still give the same id.
    """
    paths = sorted({os.path.normpath(os.path.join(base, str(p))) for p in images})
    stems = {p: video_id(p) for p in paths}
    if len(set(stems.values())) == len(paths):
        return stems
    ids = {p: relative_id(p, base) for p in paths}
    seen: dict[str, str] = {}
    for path, vid in ids.items():
        if vid in seen:
            raise InputError(where, f"videos {seen[vid]} and {path} get the same id '{vid}'; rename one of them")
        seen[vid] = path
    return ids
