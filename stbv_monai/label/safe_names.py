"""Which names from a request may reach the file system: video ids, new video ids, label tags.

MONAI Label's local datastore joins request strings into paths (``<studies>/<id>.nii.gz``,
``<studies>/labels/<tag>/<id>.nii.gz``), so a tag ``../../x`` or an id ``/abs/path`` would
write or read outside the studies folder. The rules, checked before any file is touched:

* a **video id** must be a plain name (no path separator, not ``.``/``..``, no NUL) *and* be in
  the datastore's own list: an absolute path, a traversal and a missing video all get the
  same answer, so the answer says nothing about files outside the datastore;
* a **label tag** and a **new video id** (an upload) must match :data:`TAG_PATTERN` /
  :data:`NEW_ID_PATTERN` (letters, digits, ``_ . -``, starting with a letter or digit) and
  hold no ``..``.

Pure Python (no MONAI Label), so the rules are testable on their own.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from enum import Enum

__all__ = [
    "NEW_ID_PATTERN",
    "TAG_PATTERN",
    "UnsafeName",
    "check_new_id",
    "check_tag",
    "is_known_id",
    "is_plain_name",
    "is_safe_tag",
    "shown",
    "unknown_video",
]

#: A label tag: a folder name under ``labels/`` (``final``, ``original``, ``v2.1``, ...).
TAG_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
#: The id of a video added by upload (``PUT /datastore/image``): its file is ``<id>.nii.gz``.
NEW_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_SHOWN = 80


class UnsafeName(ValueError):
    """A request string that must not become a path; ``str()`` is the message for the client."""


def shown(value: object) -> str:
    """``value`` quoted for a message, cut to 80 characters (it is the caller's, not ours)."""
    text = value if isinstance(value, str) else repr(value)
    text = text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."
    return "'" + text.replace("'", "\\'") + "'"


def unknown_video(image_id: object, count: int | None = None) -> str:
    """The one message for every video id that is not in the datastore (path, traversal or missing)."""
    where = f" ({count} videos; GET /datastore/ lists them)" if count is not None else ""
    return f"video {shown(image_id)} is not in the datastore{where}"


def is_plain_name(name: object) -> bool:
    """A non-empty string that names a file *in* a folder: no separator, not ``.``/``..``, no NUL."""
    return (isinstance(name, str) and bool(name) and name not in (".", "..")
            and not any(c in name for c in ("/", "\\", "\x00")))


def is_known_id(image_id: object, known: Collection[str]) -> bool:
    """Whether ``image_id`` is a plain name that the datastore lists."""
    return is_plain_name(image_id) and image_id in known


def is_safe_tag(tag: object) -> bool:
    """Whether ``tag`` may name a label folder (:data:`TAG_PATTERN`, no ``..``)."""
    return isinstance(tag, str) and TAG_PATTERN.fullmatch(tag) is not None and ".." not in tag


def check_tag(tag: object) -> str:
    """``tag`` as a plain string when it is safe (an enum such as ``DefaultLabelTag.FINAL`` gives its value).

    Raises:
        UnsafeName: anything else (a path, ``..``, other characters, longer than 64).
    """
    value = tag.value if isinstance(tag, Enum) else tag
    if not is_safe_tag(value):
        raise UnsafeName(f"label tag {shown(value)} is not allowed: use 1-64 letters, digits, '_', '.' or '-', "
                         "starting with a letter or digit, without '..'")
    return str(value)


def check_new_id(image_id: object) -> str:
    """``image_id`` itself when it may name a new video file (:data:`NEW_ID_PATTERN`, no ``..``).

    Raises:
        UnsafeName: anything else.
    """
    if not (isinstance(image_id, str) and NEW_ID_PATTERN.fullmatch(image_id) and ".." not in image_id):
        raise UnsafeName(f"video id {shown(image_id)} is not allowed: use 1-128 letters, digits, '_', '.' or '-', "
                         "starting with a letter or digit, without '..'")
    return image_id
