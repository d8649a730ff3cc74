"""Synthetic still B-mode breast-ultrasound images with lesion masks, in the BUSI layout.

For the stage-0 pretraining on static images (STCN turns them into pseudo-videos).
:func:`make_stills` writes ``<out>/<class>/still_<i>.png`` with the mask ``still_<i>_mask.png``
(uint8, 0/255) and a manifest ``stills.json`` that is also a still-image datalist (see
:func:`stbv_monai.data.stills.load_still_entries`). Classes follow the generator's own lesion
kinds: ``benign`` (cyst, oval, microlobulated), ``malignant`` (irregular, spiculated, the kinds
``synthetic_lesion`` renders with malignant features) and ``normal`` (no lesion, empty mask).

Each still is a one-frame draw of the video generator's models (anatomy, lesion, probe, scanner;
``synthetic_video``), so stills and videos look alike, but from other random patients: still
``index`` uses ``SeedSequence([seed, index], spawn_key=(STILLS_TAG, attempt))`` while the videos
use plain keys ``[seed, index]`` / ``[seed, index, k]`` (no spawn key), so the streams never
coincide. Files are identical for a seed whatever the number of worker processes.
"""

from __future__ import annotations

import json
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from stbv_monai.data.io import atomic_path
from stbv_monai.data.synthetic import worker_context
from stbv_monai.data.synthetic_anatomy import gland_band, render_canvas, sample_anatomy
from stbv_monai.data.synthetic_lesion import sample_lesion
from stbv_monai.data.synthetic_motion import sample_motion
from stbv_monai.data.synthetic_video import MIN_SIZE, render_frames, sample_scanner
from stbv_monai.errors import InputError

__all__ = ["CLASSES", "MANIFEST_NAME", "STILLS_TAG", "make_stills", "still_class", "synthesize_still"]

logger = logging.getLogger(__name__)

#: The fixed spawn-key tag of the stills' random streams (ASCII ``STIL``).
STILLS_TAG = 0x5354494C
#: The manifest of a complete generation; a folder holding it may be regenerated.
MANIFEST_NAME = "stills.json"
GENERATOR = "stbv_monai.data.synthetic_stills.make_stills"
CLASSES = ("benign", "malignant", "normal")
_MALIGNANT = ("irregular", "spiculated")
_ATTEMPTS = 8
_MIN_AREA = 0.002  # a lesion still must show at least this fraction of the image (else redrawn)


def still_rng(seed: int, index: int, attempt: int = 0) -> np.random.Generator:
    """The random stream of still ``index``: disjoint from every video's (see the module docstring)."""
    return np.random.default_rng(np.random.SeedSequence([seed, index], spawn_key=(STILLS_TAG, attempt)))


def is_normal(index: int, normal_fraction: float) -> bool:
    """Whether still ``index`` shows no lesion: evenly spread, a share of ``normal_fraction``, whatever the count."""
    return int(np.floor((index + 1) * normal_fraction)) > int(np.floor(index * normal_fraction))


def still_class(kind: str) -> str:
    """BUSI class folder of a lesion kind (``"none"`` for a normal image)."""
    return "normal" if kind == "none" else "malignant" if kind in _MALIGNANT else "benign"


def synthesize_still(index: int, size: int = 128, seed: int = 0,
                     normal: bool = False) -> tuple[np.ndarray, np.ndarray, str]:
    """Still ``index``: ``(S, S)`` float32 image in [0, 1], ``(S, S)`` uint8 mask and the lesion kind.

    The kind is ``"none"`` for a normal image. A lesion whose cross-section is too small to see is
    redrawn from the next ``attempt`` of the still's stream.
    """
    for attempt in range(_ATTEMPTS):
        image, mask, kind = _draw_still(still_rng(seed, index, attempt), size, normal)
        if normal or mask.mean() >= _MIN_AREA:
            return image, mask, kind
    raise RuntimeError(f"still {index}: could not draw a visible lesion in {_ATTEMPTS} attempts")


def _draw_still(rng: np.random.Generator, size: int, normal: bool) -> tuple[np.ndarray, np.ndarray, str]:
    """One frame of ``synthetic_video``'s models: patient, lesion in the plane, probe at rest, scanner.

    A normal image keeps the drawn lesion's place in the stream (same anatomy statistics) but
    renders it far below the field of view, where ``render_lesion`` leaves the tissue untouched.
    """
    anatomy = sample_anatomy(rng)
    lesion = sample_lesion(rng, 0.0, gland_band(anatomy, 0.0))
    motion = sample_motion(rng, 1, lesion.centre, lesion.max_radius(), "none")
    x_range = (float(motion.shift.min()) - 0.12, float(motion.shift.max()) + 1.15)
    canvas = render_canvas(rng, anatomy, x_range, size, (*lesion.centre, lesion.max_radius()))
    scanner = sample_scanner(rng, size)
    shown = replace(lesion, centre=(lesion.centre[0], 100.0)) if normal else lesion
    images, masks = render_frames(rng, canvas, shown, motion, scanner, np.array([0]))
    return images[0], masks[0], "none" if normal else lesion.kind


def _write_one(job: tuple[str, int, int, int, float]) -> dict[str, Any]:
    """Generate and write one still and its mask (runs in a worker process); return its entry."""
    import imageio.v3 as iio

    folder, index, size, seed, normal_fraction = job
    image, mask, kind = synthesize_still(index, size, seed, is_normal(index, normal_fraction))
    cls, name = still_class(kind), f"still_{index:04d}"
    (Path(folder) / cls).mkdir(exist_ok=True)
    iio.imwrite(Path(folder) / cls / f"{name}.png", np.round(image * 255).astype(np.uint8))
    iio.imwrite(Path(folder) / cls / f"{name}_mask.png", mask.astype(np.uint8) * 255)
    return {"image": f"{cls}/{name}.png", "label": f"{cls}/{name}_mask.png", "class": cls, "lesion": kind}


def _generate(folder: Path, count: int, size: int, seed: int, normal_fraction: float,
              workers: int) -> list[dict[str, Any]]:
    """Write every still into ``folder``, in parallel when ``workers > 1``; entries in index order."""
    jobs = [(str(folder), i, size, seed, normal_fraction) for i in range(count)]
    for cls in CLASSES:
        (folder / cls).mkdir(parents=True, exist_ok=True)
    if min(workers, count) == 1:
        return [_write_one(job) for job in jobs]
    with ProcessPoolExecutor(max_workers=min(workers, count), mp_context=worker_context()) as pool:
        return list(pool.map(_write_one, jobs, chunksize=8))


def check_still_arguments(count: int, size: int, normal_fraction: float, workers: int) -> None:
    """Reject generation parameters that cannot make a still dataset.

    Raises:
        InputError: ``count < 1``, ``size < 32``, ``workers < 1`` or ``normal_fraction`` outside [0, 1).
    """
    for name, value, least in (("count", count, 1), ("size", size, MIN_SIZE), ("workers", workers, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise InputError(f"synthetic stills {name}", f"must be an integer, got {value!r}")
        if value < least:
            raise InputError(f"synthetic stills {name}", f"must be at least {least}; got {value}")
    if isinstance(normal_fraction, bool) or not isinstance(normal_fraction, (int, float, np.number)) \
            or not 0.0 <= float(normal_fraction) < 1.0:
        raise InputError("synthetic stills normal_fraction", f"must be in [0, 1); got {normal_fraction!r}")


def _check_target(out: Path) -> None:
    """Refuse a file, or a non-empty folder that is not a previous complete generation."""
    if out.exists() and not out.is_dir():
        raise InputError(out, "still-image folder path exists and is not a folder")
    if not out.exists() or not any(out.iterdir()):
        return
    try:
        previous = json.loads((out / MANIFEST_NAME).read_text()).get("generator")
    except (OSError, ValueError, AttributeError):
        previous = None
    if previous != GENERATOR:
        raise InputError(out, f"folder is not empty and holds no previous synthetic stills ({MANIFEST_NAME}); "
                              "refusing to write into it: choose a new or empty folder")


def make_stills(out_dir: str | os.PathLike, count: int = 200, size: int = 128, seed: int = 0,
                normal_fraction: float = 0.15, *, workers: int = 2) -> Path:
    """Generate ``count`` synthetic stills in the BUSI layout under ``out_dir`` and return the folder.

    The folder is written atomically (it appears complete or not at all) and replaces a previous
    generation as a whole, so no stale images of a larger earlier run remain.

    Args:
        out_dir: folder to create (missing, empty or a previous generation).
        count: number of images.
        size: image height and width in pixels.
        seed: dataset seed; the same seed gives identical files.
        normal_fraction: share of images without a lesion (``normal/``, empty mask).
        workers: worker processes.

    Raises:
        InputError: bad arguments, or ``out_dir`` is a file or a non-empty folder of something else.
    """
    check_still_arguments(count, size, normal_fraction, workers)
    out = Path(out_dir)
    _check_target(out)
    started = time.perf_counter()
    with atomic_path(out) as folder:
        folder.mkdir(parents=True)
        entries = _generate(folder, count, size, seed, float(normal_fraction), workers)
        manifest = {"name": "stbv-synthetic-breast-ultrasound-stills", "generator": GENERATOR, "count": count,
                    "size": size, "seed": seed, "normal_fraction": float(normal_fraction),
                    "stream": f"SeedSequence([seed, index], spawn_key=({STILLS_TAG:#x}, attempt))",
                    "training": entries}
        (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))
    logger.info("wrote %d synthetic stills (%dx%d px, seed %d) in %.1f s: %s", count, size, size, seed,
                time.perf_counter() - started, out)
    return out
