"""The ``two_shot`` train task: the bundle's three-stage training on the annotated videos.

MONAI Label runs a train task in a subprocess of the server (``/train`` shows its status and
last output lines). The task

1. collects the datastore's videos that have a saved ``final`` label with at least one reference
   frame (the label info's ``reference_frames``, recorded when the label was saved, else the
   painted frames); unreadable videos or labels are skipped with a warning;
2. writes, in a new run folder ``<model_dir>/runs/<time>/``, a copy of those labels and a
   ``data/datalist.json`` with ``training`` = those videos, ``labelled_frames`` = their reference
   frames. ``validation`` and ``test`` name the **same videos**: the app has no held-out ground
   truth, so the J/F the run reports there measure agreement with the annotated frames'
   propagation only (unpainted frames count as lesion-free) and are not an accuracy estimate;
3. runs ``training`` of ``bundle/configs/train.yaml`` in this process (teacher, pseudo-labels,
   student, evaluation) with ``dataset_dir`` / ``output_dir`` pointing at the run folder and the
   app's network for both stages;
4. publishes the run's ``models/model.pt`` to ``<model_dir>/models/model.pt`` (atomic rename), which
   ``propagate`` serves from its next request on, and writes ``<model_dir>/train_stats.json``.

Request params: ``preset`` (``tiny`` | ``cpu`` | ``paper``: ``configs/presets/<name>.yaml``),
``config_files`` (more overlays: a list or a comma-separated string of paths relative to the
repository root, under ``configs/`` or ``bundle/configs/``), ``overrides`` (``{config id: value}``,
e.g. ``{"teacher_stage#iterations": 50}``).

A bundle config is code (``$`` expressions are evaluated, ``_target_`` instantiates any class,
``%`` reads other files), so the request may only pick the repository's own config files and
override plain settings (:func:`check_overrides`): ids of letters, digits and ``_`` (``#``/``::``
between levels, no ``_key_`` levels, no ``monai.bundle.run`` argument such as ``args_file``) with
numbers, booleans, null, short plain strings (no ``$ @ %`` start, no path) or flat lists of those.
The request is checked before anything is read or written.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monailabel.interfaces.datastore import Datastore, DefaultLabelTag
from monailabel.interfaces.tasks.train import TrainTask

from stbv_monai import BUNDLE_ROOT, REPO_ROOT
from stbv_monai.data import read_mask, read_video
from stbv_monai.data.io import atomic_path
from stbv_monai.engines.workflow import publish
from stbv_monai.errors import InputError, install_excepthook
from stbv_monai.label.app_config import AppConfig
from stbv_monai.label.references import painted_frames, parse_frame_list

__all__ = ["CONFIG_ROOTS", "LabelledVideo", "TwoShotTrain", "check_overrides", "collect_labelled_videos",
           "resolve_config_files", "write_datalist"]

logger = logging.getLogger(__name__)

TRAIN_CONFIG = BUNDLE_ROOT / "configs" / "train.yaml"
PRESETS_DIR = REPO_ROOT / "configs" / "presets"
#: The folders ``config_files`` may name files in.
CONFIG_ROOTS = (REPO_ROOT / "configs", BUNDLE_ROOT / "configs")
CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
_CONFIG_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_]*(?:(?:#|::)[A-Za-z0-9][A-Za-z0-9_]*)*")
_PLAIN_STRING = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:+-]{0,127}")


@dataclass(frozen=True)
class LabelledVideo:
    """One training video from the datastore."""

    id: str
    image: str
    label: str
    labelled_frames: list[int]


class TwoShotTrain(TrainTask):
    """Three-stage two-shot training on the datastore's annotated videos (module docstring).

    Args:
        config: the app configuration (model folder, network, device).
    """

    def __init__(self, config: AppConfig) -> None:
        super().__init__("ST-BV two-shot training (teacher, quadro-inference pseudo-labels, student) "
                         "on the videos with a saved label; the result is served by propagate")
        self.app_config = config

    def config(self) -> dict[str, Any]:
        return {"preset": "", "config_files": "", "overrides": {}}

    def stats(self) -> dict[str, Any]:
        try:
            return json.loads(self.app_config.train_stats_path.read_text())
        except (OSError, json.JSONDecodeError):
            return {}

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any]:
        install_excepthook()  # in the train subprocess an InputError ends as one line
        started = time.time()
        config_files = resolve_config_files(request.get("preset"), request.get("config_files"))
        extra = check_overrides(request.get("overrides"))
        videos = collect_labelled_videos(datastore)
        run_dir = _new_run_dir(self.app_config.runs_dir)
        datalist = write_datalist(run_dir / "data", videos)
        overrides = self._overrides(run_dir, extra)
        logger.info("two_shot: %d videos, %d labelled frames; configs %s; run folder %s", len(videos),
                    sum(len(v.labelled_frames) for v in videos), [str(f) for f in config_files], run_dir)

        from monai.bundle import run as bundle_run

        bundle_run("training", config_file=[str(f) for f in config_files], **overrides)
        model = publish(run_dir / "models" / "model.pt", self.app_config.trained_model)
        stats = {
            "run_dir": str(run_dir),
            "datalist": str(datalist),
            "model": str(model),
            "videos": [v.id for v in videos],
            "labelled_frames": {v.id: v.labelled_frames for v in videos},
            "config_files": [str(f) for f in config_files],
            "network": self.app_config.network,
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
            "duration_s": round(time.time() - started, 1),
            "evaluation": _read_json(run_dir / "evaluation" / "summary.json"),
        }
        with atomic_path(self.app_config.train_stats_path) as tmp:
            tmp.write_text(json.dumps(stats, indent=2))
        logger.info("two_shot: done in %.1fs; propagate now serves %s", stats["duration_s"], model)
        return stats

    def _overrides(self, run_dir: Path, extra: dict[str, Any]) -> dict[str, Any]:
        overrides: dict[str, Any] = {
            "teacher_network": self.app_config.network,
            "student_network": self.app_config.network,
        }
        if self.app_config.device_explicit:
            overrides["device"] = f"$torch.device('{self.app_config.device}')"
        overrides.update(extra)
        overrides.update({"dataset_dir": str(run_dir / "data"), "output_dir": str(run_dir)})
        return overrides


def check_overrides(extra: Any) -> dict[str, Any]:
    """The request's ``overrides`` as a dict, when every entry is a plain setting (module docstring).

    Raises:
        InputError: not a JSON object, or an id or value that could run code or name a file.
    """
    if isinstance(extra, str):
        if not extra.strip():
            return {}
        try:
            extra = json.loads(extra)
        except json.JSONDecodeError as exc:
            raise InputError("overrides", f"must be a JSON object of config ids, got {extra!r}") from exc
    if not extra:
        return {}
    if not isinstance(extra, dict):
        raise InputError("overrides", f"must be an object {{config id: value}}, got {extra!r}")
    reserved = _bundle_run_arguments()
    for key, value in extra.items():
        if not isinstance(key, str) or not _CONFIG_ID.fullmatch(key) or key in reserved:
            raise InputError("overrides", f"{key!r} is not an overridable config id (letters, digits and '_', "
                                          "levels joined by '#'; no '_key_' levels or monai.bundle.run arguments)")
        if not _plain_value(value):
            raise InputError("overrides", f"{key}: {value!r} is not a plain value (numbers, booleans, null, plain "
                                          "strings without '$', '@', '%' or paths, or flat lists of those)")
    return dict(extra)


def _plain_value(value: Any, nested: bool = False) -> bool:
    if value is None or isinstance(value, (bool, int, float)):
        return True
    if isinstance(value, str):
        return _PLAIN_STRING.fullmatch(value) is not None and ".." not in value
    if isinstance(value, list) and not nested:
        return all(_plain_value(v, nested=True) for v in value)
    return False


def _bundle_run_arguments() -> set[str]:
    """Keyword names ``monai.bundle.run`` takes itself (``args_file``, ``meta_file``, ...), not as config ids."""
    from monai.bundle import ConfigWorkflow, scripts

    names: set[str] = set()
    for fn in (scripts.run, scripts.run_workflow, ConfigWorkflow.__init__):
        names.update(p.name for p in inspect.signature(fn).parameters.values()
                     if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL))
    return names - {"self"}


def collect_labelled_videos(datastore: Datastore, tag: str = DefaultLabelTag.FINAL) -> list[LabelledVideo]:
    """The datastore's videos with a usable saved label, sorted by id.

    Raises:
        InputError: no video qualifies.
    """
    videos = []
    for image_id in sorted(datastore.list_images()):
        label = datastore.get_label_uri(image_id, tag)
        if not label or not Path(label).is_file():
            continue
        try:
            videos.append(_labelled_video(datastore, image_id, label, tag))
        except InputError as exc:
            logger.warning("two_shot: skipping %s: %s", image_id, exc)
    if not videos:
        raise InputError("datastore", "no video has a saved label with a reference frame: paint the lesion on "
                                      "two frames of a few videos and save the labels (PUT /datastore/label)")
    return videos


def _labelled_video(datastore: Datastore, image_id: str, label: str, tag: str) -> LabelledVideo:
    image = datastore.get_image_uri(image_id)
    frames = read_video(image).frames
    mask = read_mask(label)
    if mask.shape != frames.shape:
        raise InputError(label, f"label shape {tuple(mask.shape)} differs from the video's {tuple(frames.shape)}")
    recorded = parse_frame_list(datastore.get_label_info(image_id, tag).get("reference_frames"),
                                frames.shape[0], f"{label} reference_frames")
    labelled = recorded or painted_frames(mask)
    if not labelled:
        raise InputError(label, "no painted frame and no reference_frames recorded")
    return LabelledVideo(image_id, str(Path(image).resolve()), str(Path(label).resolve()), sorted(labelled))


def resolve_config_files(preset: Any = None, config_files: Any = None) -> list[Path]:
    """``train.yaml``, then the preset's overlay, then ``config_files``, all checked to exist.

    ``preset`` must name a file of ``configs/presets/``; each of ``config_files`` must be a path
    relative to the repository root, to a ``.yaml``/``.yml``/``.json`` file under :data:`CONFIG_ROOTS`.

    Raises:
        InputError: an unknown preset, a missing config file, or a path outside those folders.
    """
    files = [TRAIN_CONFIG]
    if preset:
        known = sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))
        if str(preset).strip() not in known:
            raise InputError("preset", f"unknown preset {preset!r}; choose one of {known}")
        files.append(PRESETS_DIR / f"{str(preset).strip()}.yaml")
    if isinstance(config_files, str):
        config_files = [c for c in config_files.replace(";", ",").split(",") if c.strip()]
    if config_files and not isinstance(config_files, (list, tuple)):
        raise InputError("config_files", f"must be a list of paths, got {config_files!r}")
    for name in config_files or []:
        files.append(_repository_config(name))
    return files


def _repository_config(name: Any) -> Path:
    relative = Path(str(name).strip())
    roots = ", ".join(f"{r.relative_to(REPO_ROOT)}/" for r in CONFIG_ROOTS)
    if not isinstance(name, str) or relative.is_absolute() or ".." in relative.parts or str(name).startswith("~"):
        raise InputError("config_files", f"{name!r}: give a path relative to the repository root, under {roots}")
    path = (REPO_ROOT / relative).resolve()
    if path.suffix not in CONFIG_SUFFIXES or not any(path.is_relative_to(r.resolve()) for r in CONFIG_ROOTS):
        raise InputError("config_files", f"{name}: not a config file of this repository (.yaml, .yml or .json "
                                         f"under {roots})")
    if not path.is_file():
        raise InputError("config_files", f"{name}: file not found (relative paths start at {REPO_ROOT})")
    return path


def write_datalist(folder: Path, videos: list[LabelledVideo]) -> Path:
    """Copy the labels into ``folder/labels/`` and write ``folder/datalist.json`` (images stay where they are)."""
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    entries = []
    for v in videos:
        suffix = ".nii" if v.label.endswith(".nii") else ".nii.gz"
        shutil.copyfile(v.label, folder / "labels" / f"{v.id}{suffix}")
        entries.append({"image": v.image, "label": f"labels/{v.id}{suffix}", "labelled_frames": v.labelled_frames})
    path = folder / "datalist.json"
    path.write_text(json.dumps({"training": entries, "validation": entries, "test": entries}, indent=2))
    return path


def _new_run_dir(root: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for i in range(1000):
        path = root / (stamp if i == 0 else f"{stamp}-{i}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise InputError(root, "cannot create a new run folder")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
