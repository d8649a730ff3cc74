"""Stage 2: quadro-inference pseudo-labels for every training frame, written to disk and resumable.

The teacher propagates forward and backward from each labelled frame and every frame keeps the
prediction from its nearest labelled frame (``stbv_monai.inference.propagate`` does the merge).
Labelled frames keep their ground truth, so the set is Ŷ = Yˡ ∪ Ŷᵘ. The labelling itself is a
:class:`~stbv_monai.engines.VideoEvaluator` of the pending training videos (labelled frames as
references) with a :class:`~stbv_monai.handlers.pseudo_label_writer.PseudoLabelWriter`, which
writes each video's mask video and record atomically, the record last, so a killed run resumes
at the first video without a record. ``manifest.json`` merges the records once all videos are
done and is what the student stage reads.

Files are named by each video's unique id (:mod:`stbv_monai.data.ids`). A record written under
the old naming (``<file name>.json``, before ids were unique) is still read where it is
certainly this video's: its recorded image is this video and no other video of the run has the
same file name. Otherwise it is reported and the video is labelled again under its id.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.inferers import Inferer

from stbv_monai.constants import SOURCE_GT, SOURCE_PSEUDO
from stbv_monai.data.ids import entry_id, legacy_id
from stbv_monai.data.io import atomic_path, video_id
from stbv_monai.engines.distributed import barrier
from stbv_monai.engines.evaluator import VideoEvaluator
from stbv_monai.handlers.pseudo_label_writer import PseudoLabelWriter, Scorer

__all__ = [
    "MANIFEST_NAME",
    "PseudoLabeller",
    "attach_progress",
    "read_manifest",
    "read_summary",
    "score_against_label",
    "summarise_records",
    "video_id",
]

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=1))


def read_manifest(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Student-stage datalist entries from a stage-2 manifest (``image``, ``label``, ``source``...)."""
    return json.loads(Path(path).read_text())["videos"]


def read_summary(path: str | os.PathLike) -> dict[str, float]:
    """The statistics of a stage-2 manifest: frames per source, mean teacher confidence, pseudo J/F/J&F."""
    return json.loads(Path(path).read_text())["summary"]


class PseudoLabeller:
    """Label every training frame with the teacher and write Ŷ to ``output_dir``.

    Args:
        network: the teacher (an STCN), already holding its weights.
        entries: training datalist entries (``image``, ``label``, ``labelled_frames``).
        output_dir: where ``<id>.nii.gz`` masks, ``<id>.json`` records and the manifest go.
        inferer: ``inferer(frames, network, references=...) -> (T, H, W)`` probabilities
            (a :class:`~stbv_monai.inference.VideoPropagationInferer`: quadro-inference).
        device: where the teacher runs.
        threshold: probability above which a pseudo-label pixel is lesion.
        scorer: optional ``scorer(pred, gt, references) -> dict`` that scores the pseudo-labels
            against the full label file (when it holds more than the labelled frames).
        rank, world_size: this process's share of the videos under torchrun (videos ``rank::world_size``).
        teacher_path: the teacher's weights file; a record older than it came from an earlier
            teacher (one retrained since) and is redone.
    """

    def __init__(self, network: torch.nn.Module, entries: Sequence[dict[str, Any]], output_dir: str | os.PathLike,
                 inferer: Inferer, device: torch.device | str = "cpu",
                 threshold: float = 0.5, scorer: Scorer | None = None,
                 rank: int = 0, world_size: int = 1, teacher_path: str | os.PathLike | None = None) -> None:
        self.network = network
        self.entries = list(entries)
        self.output_dir = Path(output_dir)
        self.inferer = inferer
        self.device = torch.device(device)
        self.threshold = threshold
        self.scorer = scorer
        self.rank, self.world_size = rank, world_size
        self.teacher_path = Path(teacher_path) if teacher_path else None
        self.handlers: list[Any] = []  # more handlers for each run's evaluator (progress)
        self._reported: set[Path] = set()

    def pending(self) -> list[dict[str, Any]]:
        """This rank's videos that have no finished record yet (resume point)."""
        mine = self.entries[self.rank :: self.world_size]
        return [e for e in mine if self._finished_record(e) is None]

    def finished(self) -> bool:
        """Whether the manifest is written, newer than the teacher, and no video is pending (a done stage)."""
        manifest = self.output_dir / MANIFEST_NAME
        return manifest.is_file() and not self._older_than_teacher(manifest) and not self.pending()

    def _older_than_teacher(self, path: Path) -> bool:
        return (self.teacher_path is not None and self.teacher_path.is_file()
                and path.stat().st_mtime < self.teacher_path.stat().st_mtime)

    def run(self) -> Path | None:
        """Label the pending videos; once every rank is done, rank 0 writes the manifest (its path; others: None)."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        todo = self.pending()
        done = len(self.entries[self.rank :: self.world_size]) - len(todo)
        if done:
            logger.info("pseudo-labels: resuming, %d video(s) already done, %d to go", done, len(todo))
        if todo:
            self.evaluator(todo).run()
        if self.world_size > 1:
            barrier()  # every rank's records are on disk before rank 0 merges them
        return self.write_manifest() if self.rank == 0 else None

    def evaluator(self, entries: Sequence[dict[str, Any]]) -> VideoEvaluator:
        """The evaluator that labels ``entries`` and writes their files."""
        writer = PseudoLabelWriter(self.output_dir, self.scorer)
        return VideoEvaluator(self.inferer, entries, self.network, self.device, threshold=self.threshold,
                              val_handlers=[writer, *self.handlers])

    def _record_path(self, entry: dict[str, Any]) -> Path:
        return self.output_dir / f"{entry_id(entry)}.json"

    def _finished_record(self, entry: dict[str, Any]) -> Path | None:
        """The video's finished record, or ``None`` if it is to be labelled (again).

        A record counts only if it names this video's image (a datalist edited between runs may
        give another video the same id). Under the old naming it counts only where certainly this
        video's: no other video of the run has the same file name.
        """
        image = str(Path(entry["image"]).resolve())
        path, legacy = self._record_path(entry), self.output_dir / f"{legacy_id(entry)}.json"
        if path.is_file():
            if self._older_than_teacher(path):
                self._say_once(self.output_dir, logging.INFO, "pseudo-labels in %s predate the teacher %s: "
                               "labelling again", self.output_dir, self.teacher_path)
                return None
            if _recorded_image(path) == image:
                return path
            self._say_once(path, logging.WARNING, "pseudo-labels: %s records another video, not %s; labelling it again",
                           path, image)
            return None
        if legacy == path or not legacy.is_file():
            return None
        shared = sum(legacy_id(e) == legacy_id(entry) for e in self.entries) > 1
        if not shared and _recorded_image(legacy) == image and not self._older_than_teacher(legacy):
            self._say_once(legacy, logging.INFO, "pseudo-labels: reading %s, written under the old naming, for %s",
                           legacy, entry_id(entry))
            return legacy
        why = "several videos have that file name" if shared else "it records another video"
        self._say_once(legacy, logging.WARNING, "pseudo-labels: %s, written under the old naming, is not used (%s); "
                       "the video(s) named %s are labelled again under their ids, e.g. %s", legacy, why, legacy.stem,
                       path.name)
        return None

    def _say_once(self, about: Path, level: int, message: str, *args: Any) -> None:
        """Log ``message`` the first time ``about`` is judged (``pending`` and ``write_manifest`` both look)."""
        if about not in self._reported:
            self._reported.add(about)
            logger.log(level, message, *args)

    def write_manifest(self) -> Path:
        """Merge every video's record (all ranks) into ``manifest.json``, in datalist order."""
        records = [self._finished_record(e) for e in self.entries]
        missing = [e["image"] for e, r in zip(self.entries, records) if r is None]
        if missing:
            raise RuntimeError(f"{self.output_dir}: pseudo-labels missing for {len(missing)} video(s), "
                               f"e.g. {missing[0]}; run the pseudo_label stage again to finish them")
        videos = [{**json.loads(r.read_text()), "id": entry_id(e)} for e, r in zip(self.entries, records)]
        path = self.output_dir / MANIFEST_NAME
        _write_json(path, {"videos": videos, "summary": summarise_records(videos)})
        logger.info("pseudo-labels: %d videos -> %s", len(videos), path)
        return path


def _recorded_image(record: Path) -> str | None:
    """The ``image`` a per-video record names (``None`` if it cannot be read)."""
    try:
        return str(json.loads(record.read_text())["image"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def summarise_records(videos: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Frames per source, mean teacher confidence on pseudo frames, mean score where present."""
    source = np.concatenate([np.asarray(v["source"]) for v in videos]) if videos else np.zeros(0)
    conf = np.concatenate([np.asarray(v["confidence"]) for v in videos]) if videos else np.zeros(0)
    out: dict[str, float] = {
        "videos": float(len(videos)),
        "frames_gt": float((source == SOURCE_GT).sum()),
        "frames_pseudo": float((source == SOURCE_PSEUDO).sum()),
        "mean_confidence": float(conf[source == SOURCE_PSEUDO].mean()) if (source == SOURCE_PSEUDO).any() else 1.0,
    }
    scored = [v["score"] for v in videos if "score" in v]
    for key in scored[0] if scored else ():
        out[f"pseudo_{key}"] = float(np.nanmean([s[key] for s in scored]))
    return out


def attach_progress(labeller: PseudoLabeller) -> None:
    """Show videos done / total while stage 2 runs (rank 0 only)."""
    if labeller.rank != 0:
        return
    labeller.handlers.append(_Progress())


class _Progress:
    """A bar of videos and a closing count, on each run's evaluator."""

    def attach(self, engine: Engine) -> None:
        from ignite.contrib.handlers import ProgressBar

        ProgressBar(persist=True, desc="pseudo-labels (videos)").attach(engine)
        engine.add_event_handler(Events.COMPLETED, lambda e: logger.info("pseudo-labels: %d videos labelled",
                                                                         e.state.iteration))


def score_against_label(mask: np.ndarray, gt: np.ndarray, labelled: Sequence[int]) -> dict[str, float]:
    """J, F, J&F of pseudo-labels against the full label file, on the frames that were not labelled.

    Only meaningful where the label file holds every frame (synthetic data, fully annotated sets).
    """
    from stbv_monai.metrics import evaluate_video

    result = evaluate_video(mask, gt, labelled)
    return {"J": result.j, "F": result.f, "JF": result.jf}
