"""The project's embedded default dataset: synthetic B-mode breast-ultrasound videos, two-shot labelled.

:func:`make_dataset` writes ``images/<vid>.nii.gz`` (uint8 B-mode, time on the third axis),
``labels/<vid>.nii.gz`` (the lesion mask of *every* frame, for evaluation and the fully supervised
upper bound) and a decathlon ``datalist.json`` whose entries name two ``labelled_frames`` per
video, the paper's 1.9 % regime (2 of ~100 frames). The two frames are picked as an annotator
would: far apart, one early and one late, where the lesion is clearly visible.

Every video is drawn from its own random stream ``(seed, index)`` (see
:func:`~stbv_monai.data.synthetic_video.synthesize_video`), so the dataset is identical for a
seed whatever the number of worker processes. Realism (anatomy, lesions, motion, scanner) lives
in ``synthetic_anatomy``, ``synthetic_lesion``, ``synthetic_motion`` and ``synthetic_video``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from stbv_monai.data.io import atomic_path, write_mask, write_video
from stbv_monai.data.synthetic_video import FOV_MM, FPS, MIN_SIZE, SyntheticVideo, check_arguments, synthesize_video
from stbv_monai.errors import InputError

__all__ = [
    "MIN_SIZE",
    "SyntheticVideo",
    "check_arguments",
    "choose_labelled_frames",
    "make_dataset",
    "split_counts",
    "synthesize_video",
    "video_id",
]

logger = logging.getLogger(__name__)

#: Fractions of videos for validation and test; training gets the rest.
SPLIT_FRACTIONS = {"validation": 0.15, "test": 0.25}
DESCRIPTION = (
    "Synthetic B-mode breast-ultrasound videos (linear probe, 40 mm depth): layered breast anatomy "
    "(skin, fat lobules, Cooper's ligaments, fibroglandular tissue, retromammary fat, pectoralis, ribs) "
    "with tissue-fixed Rayleigh speckle, one hypoechoic lesion per video (cyst, oval, microlobulated, "
    "irregular or spiculated; halo, posterior enhancement or shadowing), look-alike distractors, and "
    "probe sweep, elevational slicing, compression, breathing, jitter and gain drift. Labels hold every "
    "frame's lesion mask; 'labelled_frames' are the two frames an annotator would label (two-shot)."
)


def split_counts(videos: int) -> dict[str, int]:
    """Videos per split: about 60/15/25 % with at least one per split once there are three videos.

    With one video it trains only; with two, one trains and one tests.
    """
    if videos < 3:
        return {"training": 1, "validation": 0, "test": videos - 1}
    val = max(1, int(round(SPLIT_FRACTIONS["validation"] * videos)))
    test = max(1, int(round(SPLIT_FRACTIONS["test"] * videos)))
    return {"training": videos - val - test, "validation": val, "test": test}


def choose_labelled_frames(mask: np.ndarray, rng: np.random.Generator) -> list[int]:
    """Two frames far apart where the lesion is clearly visible, as an annotator would pick.

    Candidates are frames whose lesion area is at least 30 % of the video's largest; one is
    drawn from the earliest third of the candidates' time span, one from the latest third.

    Args:
        mask: ``(T, H, W)`` lesion masks with the lesion present in at least two frames.
        rng: random generator for the draw.
    """
    area = mask.reshape(mask.shape[0], -1).sum(axis=1)
    present = np.flatnonzero(area >= 0.3 * area.max())
    if present.size < 2:
        present = np.flatnonzero(area > 0)
    if present.size < 2:
        raise ValueError("the lesion is visible in fewer than two frames")
    lo, hi = present[0], present[-1]
    span = hi - lo
    early = present[present <= lo + span / 3]
    late = present[present >= hi - span / 3]
    first = int(rng.choice(early))
    late = late[late > first]
    second = int(rng.choice(late)) if late.size else int(present[present > first][-1])
    return [first, second]


def video_id(index: int) -> str:
    """Name of video ``index``: ``bus_0000``, ``bus_0001``..."""
    return f"bus_{index:04d}"


def _write_one(job: tuple[str, int, int, int, int, float]) -> dict[str, Any]:
    """Generate and write one video and its masks (runs in a worker process); return its entry."""
    folder, index, frames, size, seed, exit_prob = job
    video = synthesize_video(index, frames, size, seed, exit_prob)
    name = video_id(index)
    write_video(Path(folder) / "images" / f"{name}.nii.gz", video.frames, spacing=video.spacing, fps=FPS)
    write_mask(Path(folder) / "labels" / f"{name}.nii.gz", video.mask, spacing=video.spacing)
    labelled = choose_labelled_frames(video.mask, np.random.default_rng([seed, index, 0, 1]))
    visible = int(np.count_nonzero(video.mask.any(axis=(1, 2))))
    return {"image": f"images/{name}.nii.gz", "label": f"labels/{name}.nii.gz", "labelled_frames": labelled,
            "lesion": video.kind, "exit": video.exit_mode, "lesion_frames": visible}


def _generate(folder: Path, videos: int, frames: int, size: int, seed: int, exit_prob: float,
              workers: int) -> list[dict[str, Any]]:
    """Write every video into ``folder``, in parallel when ``workers > 1``; entries in index order."""
    jobs = [(str(folder), i, frames, size, seed, exit_prob) for i in range(videos)]
    workers = min(workers, videos)
    if workers == 1:
        return [_write_one(job) for job in jobs]
    with ProcessPoolExecutor(max_workers=workers, mp_context=worker_context()) as pool:
        return list(pool.map(_write_one, jobs))


def worker_context() -> multiprocessing.context.BaseContext:
    """``fork`` where the platform has it, else ``spawn``.

    Forked workers inherit the imported modules; spawned ones re-import ``stbv_monai.data``,
    which pulls in MONAI and torch (seconds per worker). The workers run only numpy, scipy
    and nibabel code, never torch, so forking a process that has torch loaded is safe here.
    """
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _datalist(entries: list[dict[str, Any]], videos: int, frames: int, size: int, seed: int,
              exit_prob: float) -> dict[str, Any]:
    counts = split_counts(videos)
    spacing = FOV_MM / size
    out: dict[str, Any] = {
        "name": "stbv-synthetic-breast-ultrasound", "description": DESCRIPTION,
        "modality": {"0": "US"}, "labels": {"0": "background", "1": "lesion"},
        "videos": videos, "frames": frames, "size": size, "seed": seed, "exit_prob": exit_prob,
        "spacing_mm": [spacing, spacing], "fps": FPS, "generator": "stbv_monai.data.synthetic.make_dataset",
    }
    start = 0
    for split in ("training", "validation", "test"):
        out[split] = entries[start:start + counts[split]]
        start += counts[split]
    return out


def make_dataset(out_dir: str | os.PathLike, videos: int = 32, frames: int = 100, size: int = 128, seed: int = 0,
                 *, exit_prob: float = 0.5, workers: int = 2) -> Path:
    """Generate the synthetic two-shot dataset under ``out_dir`` and return its ``datalist.json``.

    A new (missing or empty) folder is filled atomically: it appears complete or not at all.
    An existing folder is written into, replacing files of the same names.

    Args:
        out_dir: dataset folder; datalist paths are relative to it.
        videos: number of videos (split about 60/15/25 % into training/validation/test).
        frames: frames per video ``T``.
        size: frame height and width in pixels.
        seed: dataset seed; the same seed gives identical files.
        exit_prob: probability that a video's lesion is out of view for some frames at its start or end.
        workers: worker processes.

    Raises:
        InputError: bad sizes (see :func:`check_arguments`) or ``out_dir`` is a file.
    """
    check_arguments(videos, frames, size, exit_prob, workers)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(out, "dataset folder path exists and is not a folder")
    started = time.perf_counter()
    logger.info("generating %d synthetic breast-ultrasound videos (%d frames, %dx%d px, seed %d) in %s",
                videos, frames, size, size, seed, out)
    fresh = not out.exists() or not any(out.iterdir())
    with atomic_path(out) if fresh else contextlib.nullcontext(out) as folder:
        folder.mkdir(parents=True, exist_ok=True)
        entries = _generate(folder, videos, frames, size, seed, exit_prob, workers)
        with atomic_path(folder / "datalist.json") as tmp:
            tmp.write_text(json.dumps(_datalist(entries, videos, frames, size, seed, exit_prob), indent=2))
    logger.info("wrote %d videos in %.1f s: %s", videos, time.perf_counter() - started, out / "datalist.json")
    return out / "datalist.json"

