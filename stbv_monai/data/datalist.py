"""Decathlon-style video datalists: which videos, which mask, which frames an expert labelled.

A datalist is ``{"training": [...], "validation": [...], "test": [...]}``; each entry is
``{"image": path, "label": path, "labelled_frames": [t1, ...]}`` with paths relative to the
datalist's folder (one or more labelled frames; ``validation`` may be left out). Frames outside
``labelled_frames`` count as unlabelled even where the label file has pixels: that is how full
ground truth is kept for evaluation and for the fully-supervised upper bound. Path resolution
is MONAI's ``load_decathlon_datalist``; this module adds the checks that turn a bad datalist
into one clear message, and each entry's ``id`` (:mod:`stbv_monai.data.ids`), the unique name
its outputs are written under.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from monai.data import load_decathlon_datalist

from stbv_monai.data.ids import assign_ids
from stbv_monai.data.io import MIN_FRAMES, count_frames, read_mask, read_video, video_id
from stbv_monai.data.memory import check_video_memory
from stbv_monai.errors import InputError

__all__ = ["OPTIONAL_SPLITS", "SPLITS", "describe_datalist", "folder_entries", "labelled_fraction", "load_datalist", "check_labelled_frames", "check_video_pair", "load_video_pair"]

logger = logging.getLogger(__name__)

SPLITS = ("training", "validation", "test")
#: Splits a datalist may leave out: without ``validation`` the stages train without validating.
OPTIONAL_SPLITS = ("validation",)
_REPORTED_OUTSIDE: set[str] = set()  # datalists whose paths outside their folder were logged


def load_datalist(path: str | os.PathLike, split: str, require_label: bool = True) -> list[dict[str, Any]]:
    """Read one split of a datalist with absolute paths and ids, checking keys and that files exist.

    Args:
        path: the datalist JSON file.
        split: ``training``, ``validation`` or ``test``; a missing ``validation`` is an empty split.
        require_label: whether every entry must name a label video (inference may go without).

    Returns:
        The entries, each with an ``id`` unique in the datalist (:mod:`stbv_monai.data.ids`).

    Raises:
        InputError: unreadable JSON, missing split or keys, bad ``labelled_frames``, missing files,
            a video listed twice in the split, or two videos whose ids collide.
    """
    path = Path(path)
    raw = _read_json(path)
    if split in OPTIONAL_SPLITS and split not in raw:
        return []
    if split not in raw or not isinstance(raw[split], list):
        raise InputError(path, f"datalist has no '{split}' list (found keys: {', '.join(sorted(raw)) or 'none'})")
    if not raw[split] and split not in OPTIONAL_SPLITS:
        raise InputError(path, f"datalist's '{split}' list is empty: it needs at least one video")
    for i, entry in enumerate(raw[split]):
        _check_entry(entry, f"{path} [{split}][{i}]", require_label)
    _report_outside_paths(path, raw)
    ids = assign_ids(_raw_paths(raw, ("image",)), path.parent, path)
    entries = load_decathlon_datalist(str(path), is_segmentation=True, data_list_key=split, base_dir=str(path.parent))
    listed: dict[str, int] = {}
    for i, entry in enumerate(entries):
        for key in ("image", "label"):
            if key in entry and not Path(entry[key]).exists():
                raise InputError(f"{path} [{split}][{i}]", f"{key} file not found: {entry[key]}")
        image = os.path.normpath(entry["image"])
        if image in listed:
            raise InputError(f"{path} [{split}][{i}]", f"video {entry['image']} is already listed at "
                                                       f"[{split}][{listed[image]}]; list each video once per split")
        listed[image] = i
        entry["labelled_frames"] = [int(t) for t in entry.get("labelled_frames", [])]
        entry["id"] = ids[image]
    return entries


def _raw_paths(raw: dict[str, Any], keys: Sequence[str]) -> list[str]:
    """The path strings of ``keys`` in every well-formed entry of every split."""
    return [e[k] for split in SPLITS if isinstance(raw.get(split), list) for e in raw[split]
            if isinstance(e, dict) for k in keys if isinstance(e.get(k), str)]


def _report_outside_paths(path: Path, raw: dict[str, Any]) -> None:
    """Log once per datalist (per process) that some of its paths lead outside its folder.

    Allowed (users point at shared storage, the MONAI Label app at its studies), but a datalist
    from elsewhere can make the tools read any file, so it is said, at INFO level because it is
    normal use. The check is on the text of the paths (``..``, absolute), not on symlinks.
    """
    key = str(path.resolve())
    if key in _REPORTED_OUTSIDE:
        return
    _REPORTED_OUTSIDE.add(key)
    base = os.path.normpath(path.parent.absolute())
    outside = [p for p in dict.fromkeys(_raw_paths(raw, ("image", "label")))
               if os.path.commonpath([base, os.path.normpath(os.path.join(base, p))]) != base]
    if outside:
        logger.info("%s: %d path(s) lead outside the dataset folder %s (e.g. %s); reading them as given",
                    path, len(outside), base, outside[0])


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputError(path, "datalist file not found")
    try:
        with open(path) as f:
            raw = json.load(f)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(path, f"not a readable JSON datalist ({exc})") from exc
    if not isinstance(raw, dict):
        raise InputError(path, "datalist must be a JSON object with 'training'/'validation'/'test' lists")
    return raw


def _check_entry(entry: Any, where: str, require_label: bool) -> None:
    if not isinstance(entry, dict):
        raise InputError(where, f"entry must be an object with 'image', 'label', 'labelled_frames', got {entry!r}")
    required = ("image", "label", "labelled_frames") if require_label else ("image",)
    missing = [k for k in required if k not in entry]
    if missing:
        raise InputError(where, f"entry misses key(s) {', '.join(missing)}")
    bad = [k for k in ("image", "label") if k in entry and not isinstance(entry[k], str)]
    if bad:
        raise InputError(where, f"{bad[0]} must be a path string, got {entry[bad[0]]!r}")
    if "labelled_frames" in entry:
        check_labelled_frames(entry["labelled_frames"], None, where)


def check_labelled_frames(frames: Any, n_frames: int | None, where: str) -> list[int]:
    """Check ``labelled_frames`` is a non-empty list of distinct frame indices in ``[0, n_frames)``."""
    if not isinstance(frames, (list, tuple)) or not frames:
        raise InputError(where, f"labelled_frames must be a non-empty list of frame indices, got {frames!r}")
    if not all(isinstance(t, (int, np.integer)) and not isinstance(t, bool) for t in frames):
        raise InputError(where, f"labelled_frames must hold integers, got {list(frames)!r}")
    dupes = sorted({int(t) for t in frames if list(frames).count(t) > 1})
    if dupes:
        raise InputError(where, f"labelled_frames has duplicated frame(s) {dupes}")
    bad = [int(t) for t in frames if t < 0 or (n_frames is not None and t >= n_frames)]
    if bad:
        limit = f"[0, {n_frames - 1}]" if n_frames is not None else "non-negative"
        raise InputError(where, f"labelled frame(s) {bad} out of range: the video's frames are {limit}")
    return [int(t) for t in frames]


def check_video_pair(frames: np.ndarray, mask: np.ndarray, labelled_frames: Sequence[int],
                     image_path: str, label_path: str) -> list[int]:
    """Check a video and its mask video belong together; warn on empty labelled masks.

    An empty mask on a labelled frame is allowed (the lesion is absent there) but is
    unusual enough in a two-shot annotation to deserve a warning.
    """
    if mask.shape != frames.shape:
        raise InputError(label_path, f"mask shape (T, H, W) = {tuple(mask.shape)} differs from video "
                                     f"{image_path} shape {tuple(frames.shape)}")
    if frames.shape[0] < MIN_FRAMES:
        raise InputError(image_path, f"video has {frames.shape[0]} frame(s); at least {MIN_FRAMES} are needed")
    frames_ok = check_labelled_frames(list(labelled_frames), frames.shape[0], label_path)
    empty = [t for t in frames_ok if not mask[t].any()]
    if empty:
        logger.warning("%s: labelled frame(s) %s have an empty mask (lesion absent there)", label_path, empty)
    return frames_ok


def load_video_pair(entry: dict[str, Any]) -> dict[str, Any]:
    """Read and check one datalist entry: ``image`` (T, H, W) float32, ``label`` (T, H, W) uint8.

    Raises:
        InputError: a bad file or pair, or a video too large to segment in the memory available.
    """
    video = read_video(entry["image"])
    check_video_memory(video.frames.shape, entry["image"])
    mask = read_mask(entry["label"])
    labelled = check_video_pair(video.frames, mask, entry["labelled_frames"], entry["image"], entry["label"])
    return {
        "image": video.frames,
        "label": mask,
        "labelled_frames": labelled,
        "spacing": video.spacing,
        "fps": video.fps,
        "image_path": str(entry["image"]),
        "label_path": str(entry["label"]),
    }


def _split_counts(path: str | os.PathLike, split: str) -> dict[str, Any]:
    """Videos, frames (from the headers) and labelled frames of one split."""
    entries = load_datalist(path, split)
    frames = sum(count_frames(e["image"]) for e in entries)
    labelled = sum(len(e["labelled_frames"]) for e in entries)
    return {"videos": len(entries), "frames": frames, "labelled_frames": labelled,
            "labelled_fraction": labelled / max(frames, 1)}


def labelled_fraction(path: str | os.PathLike, split: str = "training") -> float:
    """The share of a split's frames that carry an expert mask (two-shot: 2 per video)."""
    return _split_counts(path, split)["labelled_fraction"]


def describe_datalist(path: str | os.PathLike) -> dict[str, Any]:
    """Log and return what a datalist holds: videos and frames per split, labelled fraction."""
    summary: dict[str, Any] = {"datalist": str(path)}
    raw = _read_json(Path(path))
    for split in SPLITS:
        if split not in raw:
            continue
        summary[split] = counts = _split_counts(path, split)
        logger.info("%s: %d videos, %d frames, %d labelled (%.1f%%)", split, counts["videos"], counts["frames"],
                    counts["labelled_frames"], 100.0 * counts["labelled_fraction"])
    return summary


def folder_entries(folder: str | os.PathLike) -> list[dict[str, Any]]:
    """Entries for a folder of videos with reference masks, for inference without a datalist.

    Layout: ``<folder>/videos/<name>`` (any video format) and ``<folder>/references/<name>``
    (a mask video of the same id, lossless); the frames with paint are the references.

    Raises:
        InputError: missing sub-folders, a video without references, or references with no paint.
    """
    root = Path(folder)
    videos, refs = root / "videos", root / "references"
    for sub in (videos, refs):
        if not sub.is_dir():
            raise InputError(root, f"expected sub-folders videos/ and references/, {sub.name}/ is missing")
    masks = {video_id(p): p for p in refs.iterdir() if not p.name.startswith(".")}
    entries: list[dict[str, Any]] = []
    named: dict[str, Path] = {}
    for video in sorted(p for p in videos.iterdir() if not p.name.startswith(".")):
        if video_id(video) in named:  # a.mp4 and a.nii.gz: their outputs would overwrite each other
            raise InputError(video, f"another video in {videos} has the same name: {named[video_id(video)].name}")
        named[video_id(video)] = video
        ref = masks.get(video_id(video))
        if ref is None:
            raise InputError(video, f"no reference mask video named {video_id(video)}.* in {refs}")
        mask = read_mask(ref)
        painted = [int(t) for t in np.flatnonzero(mask.reshape(len(mask), -1).any(axis=1))]
        if not painted:
            raise InputError(ref, "no painted frame: at least one reference mask is needed")
        entries.append({"image": str(video), "label": str(ref), "labelled_frames": painted, "id": video_id(video)})
    if not entries:
        raise InputError(videos, "no videos in folder")
    return entries
