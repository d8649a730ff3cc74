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
``config_files`` (more overlays: a list or a comma-separated string; relative paths are taken
from the repository root), ``overrides`` (``{config id: value}``, e.g. ``{"teacher_stage#iterations": 50}``).
"""

from __future__ import annotations

import json
import logging
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

__all__ = ["LabelledVideo", "TwoShotTrain", "collect_labelled_videos", "resolve_config_files", "write_datalist"]

logger = logging.getLogger(__name__)

TRAIN_CONFIG = BUNDLE_ROOT / "configs" / "train.yaml"
PRESETS_DIR = REPO_ROOT / "configs" / "presets"


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
        videos = collect_labelled_videos(datastore)
        config_files = resolve_config_files(request.get("preset"), request.get("config_files"))
        run_dir = _new_run_dir(self.app_config.runs_dir)
        datalist = write_datalist(run_dir / "data", videos)
        overrides = self._overrides(run_dir, request.get("overrides"))
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

    def _overrides(self, run_dir: Path, extra: Any) -> dict[str, Any]:
        overrides: dict[str, Any] = {
            "teacher_network": self.app_config.network,
            "student_network": self.app_config.network,
        }
        if self.app_config.device_explicit:
            overrides["device"] = f"$torch.device('{self.app_config.device}')"
        if isinstance(extra, str) and extra.strip():
            try:
                extra = json.loads(extra)
            except json.JSONDecodeError as exc:
                raise InputError("overrides", f"must be a JSON object of config ids, got {extra!r}") from exc
        if extra and not isinstance(extra, dict):
            raise InputError("overrides", f"must be an object {{config id: value}}, got {extra!r}")
        overrides.update(extra or {})
        overrides.update({"dataset_dir": str(run_dir / "data"), "output_dir": str(run_dir)})
        return overrides


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

    Raises:
        InputError: an unknown preset or a missing config file.
    """
    files = [TRAIN_CONFIG]
    if preset:
        path = PRESETS_DIR / f"{str(preset).strip()}.yaml"
        if not path.is_file():
            known = sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))
            raise InputError("preset", f"unknown preset {preset!r}; choose one of {known}")
        files.append(path)
    if isinstance(config_files, str):
        config_files = [c for c in config_files.replace(";", ",").split(",") if c.strip()]
    for name in config_files or []:
        path = Path(str(name).strip()).expanduser()
        path = path if path.is_absolute() else REPO_ROOT / path
        if not path.is_file():
            raise InputError("config_files", f"{name}: file not found (relative paths start at {REPO_ROOT})")
        files.append(path.resolve())
    return files


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
