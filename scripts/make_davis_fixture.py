"""Regenerate ``tests/fixtures/davis_reference.npz`` with the official DAVIS 2017 evaluation.

The fixture pins ``stbv_monai.metrics.davis`` to the numbers of the reference
implementation (davisvideochallenge/davis2017-evaluation, ``davis2017/metrics.py``):
for each case it stores the prediction and ground-truth masks, the tolerance
``bound_th`` and the reference J (``db_eval_iou(gt, pred)``) and F
(``f_measure(pred, gt, bound_th=...)``). The cases are random and adversarial masks:
noise at several densities, shifted ellipses, thin lines, single pixels in every corner,
empty and full masks, masks touching the border, 1-pixel-wide images and non-square
sizes, at the default tolerance and at several whole-pixel radii.

The official code needs OpenCV and scikit-image, which the project does not depend on;
run this script with a separate interpreter that has them, never the project's venv::

    python3 -m venv /tmp/davisvenv
    /tmp/davisvenv/bin/pip install "numpy<2" opencv-python-headless scikit-image
    git clone https://github.com/davisvideochallenge/davis2017-evaluation /tmp/davis2017-evaluation
    /tmp/davisvenv/bin/python scripts/make_davis_fixture.py --davis-repo /tmp/davis2017-evaluation

The masks are generated from a fixed seed, so the file only changes when the cases or
the reference code change.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

logger = logging.getLogger("make_davis_fixture")

Case = tuple[str, np.ndarray, np.ndarray, float]
SHAPES = [(1, 1), (1, 9), (9, 1), (2, 2), (5, 5), (6, 7), (7, 6), (16, 31), (40, 23), (64, 64), (90, 120)]


def _ellipse(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A random filled ellipse, possibly crossing the image border."""
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    cy, cx = rng.uniform(-0.1, 1.1) * h, rng.uniform(-0.1, 1.1) * w
    ry, rx = rng.uniform(0.1, 0.6) * h + 0.5, rng.uniform(0.1, 0.6) * w + 0.5
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1


def _random_cases(rng: np.random.Generator) -> Iterator[Case]:
    """Noise and shifted-ellipse pairs on every shape."""
    for shape in SHAPES:
        for density in (0.1, 0.5, 0.9):
            yield f"noise{density}_{shape}", rng.random(shape) < density, rng.random(shape) < density, 0.008
        for k in range(3):
            gt = _ellipse(shape, rng)
            pred = np.roll(gt, (int(rng.integers(-3, 4)), int(rng.integers(-3, 4))), axis=(0, 1))
            pred ^= rng.random(shape) < 0.03
            yield f"ellipse{k}_{shape}", pred, gt, 0.008
            yield f"ellipse_vs_ellipse{k}_{shape}", _ellipse(shape, rng), gt, 0.008


def _pixel(shape: tuple[int, int], y: int, x: int) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[y, x] = True
    return m


def _adversarial_cases(rng: np.random.Generator) -> Iterator[Case]:
    """Empty, full, single-pixel, line and border masks."""
    for shape in [(1, 1), (1, 5), (5, 1), (5, 5), (6, 7), (33, 20)]:
        h, w = shape
        empty, full = np.zeros(shape, dtype=bool), np.ones(shape, dtype=bool)
        blob = _ellipse(shape, rng)
        pairs = {"empty_empty": (empty, empty), "empty_full": (empty, full), "full_empty": (full, empty),
                 "full_full": (full, full), "blob_empty": (blob, empty), "empty_blob": (empty, blob),
                 "full_blob": (full, blob), "blob_full": (blob, full)}
        corners = [(0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1), (h // 2, w // 2)]
        for a, (y, x) in enumerate(corners):
            pairs[f"pixel{a}_empty"] = (_pixel(shape, y, x), empty)
            pairs[f"pixel{a}_full"] = (_pixel(shape, y, x), full)
            for b, (v, u) in enumerate(corners):
                pairs[f"pixel{a}_pixel{b}"] = (_pixel(shape, y, x), _pixel(shape, v, u))
        for name, (pred, gt) in pairs.items():
            yield f"{name}_{shape}", pred, gt, 0.008
    yield from _line_cases()


def _line_cases() -> Iterator[Case]:
    """One-pixel lines, including on the last row and column, and half-image masks."""
    shape = (12, 17)
    lines = {}
    for name, index in [("row0", np.s_[0, :]), ("row_last", np.s_[-1, :]), ("row_mid", np.s_[5, 2:15]),
                        ("col0", np.s_[:, 0]), ("col_last", np.s_[:, -1]), ("col_mid", np.s_[1:10, 8]),
                        ("left_half", np.s_[:, :8]), ("bottom_half", np.s_[6:, :]),
                        ("bottom_right", np.s_[7:, 9:]), ("top_left", np.s_[:4, :5])]:
        m = np.zeros(shape, dtype=bool)
        m[index] = True
        lines[name] = m
    diag = np.eye(12, 17, dtype=bool)
    lines["diag"] = diag
    lines["anti_diag"] = diag[:, ::-1].copy()
    lines["checker"] = (np.indices(shape).sum(axis=0) % 2).astype(bool)
    names = sorted(lines)
    for a in names:
        for b in names:
            yield f"{a}_vs_{b}", lines[a], lines[b], 0.008


def _tolerance_cases(rng: np.random.Generator) -> Iterator[Case]:
    """The same kinds of masks at other tolerances: 0, fractions, whole-pixel radii."""
    for bound_th in (0.0, 0.02, 0.05, 1.0, 2.0, 3.0, 5.0, 8.0):
        for shape in [(6, 7), (40, 23), (90, 120)]:
            gt = _ellipse(shape, rng)
            pred = np.roll(gt, (int(rng.integers(-6, 7)), int(rng.integers(-6, 7))), axis=(0, 1))
            yield f"tol{bound_th}_shift_{shape}", pred, gt, bound_th
            yield f"tol{bound_th}_noise_{shape}", rng.random(shape) < 0.3, rng.random(shape) < 0.3, bound_th


def make_cases(seed: int = 20170) -> list[Case]:
    """All fixture cases, deterministic for a given seed."""
    rng = np.random.default_rng(seed)
    return [*_random_cases(rng), *_adversarial_cases(rng), *_tolerance_cases(rng)]


def reference_values(cases: list[Case], davis_repo: Path) -> tuple[np.ndarray, np.ndarray]:
    """J and F of every case from the official ``davis2017.metrics``."""
    sys.path.insert(0, str(davis_repo))
    from davis2017.metrics import db_eval_iou, f_measure  # type: ignore[import-not-found]

    j = np.array([float(db_eval_iou(gt, pred)) for _, pred, gt, _ in cases])
    f = np.array([float(f_measure(pred, gt, bound_th=th)) for _, pred, gt, th in cases])
    return j, f


def repo_commit(repo: Path) -> str:
    """The checked-out commit of ``repo``, or ``unknown`` when it is not a git checkout."""
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def check_dilation_equivalence(max_radius: int = 10, seed: int = 0) -> None:
    """Assert scipy's binary dilation with the disk ``x² + y² <= r²`` equals the reference's
    ``cv2.dilate`` with scikit-image's ``disk(r)`` (the tests use the scipy form)."""
    import cv2  # type: ignore[import-not-found]
    from scipy import ndimage
    from skimage.morphology import disk

    rng = np.random.default_rng(seed)
    for radius in range(max_radius + 1):
        offsets = np.arange(-radius, radius + 1)
        footprint = offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2
        for shape in [(5, 5), (17, 12), (64, 80)]:
            bmap = rng.random(shape) < 0.05
            ours = ndimage.binary_dilation(bmap, structure=footprint)
            ref = cv2.dilate(bmap.astype(np.uint8), disk(float(radius)).astype(np.uint8)).astype(bool)
            if not np.array_equal(ours, ref):
                raise AssertionError(f"scipy and cv2 dilations differ at radius {radius}, shape {shape}")


def save_fixture(out: Path, cases: list[Case], j: np.ndarray, f: np.ndarray, note: str) -> None:
    """Write the cases and reference values to ``out`` atomically (npz, compressed)."""
    arrays: dict[str, np.ndarray] = {
        "names": np.array([c[0] for c in cases]),
        "bound_th": np.array([c[3] for c in cases], dtype=np.float64),
        "j": j,
        "f": f,
        "note": np.array(note),
    }
    for i, (_, pred, gt, _) in enumerate(cases):
        arrays[f"pred_{i:04d}"] = pred.astype(np.uint8)
        arrays[f"gt_{i:04d}"] = gt.astype(np.uint8)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=out.parent)
    with os.fdopen(fd, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    os.chmod(tmp, 0o644)
    os.replace(tmp, out)


def main(argv: list[str] | None = None) -> None:
    """Command line: ``--davis-repo PATH [--out FILE]``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--davis-repo", type=Path, required=True,
                        help="checkout of davisvideochallenge/davis2017-evaluation")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "davis_reference.npz")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import cv2  # type: ignore[import-not-found]
    import skimage

    check_dilation_equivalence()
    cases = make_cases()
    j, f = reference_values(cases, args.davis_repo)
    note = (f"J = davis2017.metrics.db_eval_iou(gt, pred), F = f_measure(pred, gt, bound_th); "
            f"davis2017-evaluation commit {repo_commit(args.davis_repo)}; "
            f"made by scripts/make_davis_fixture.py with opencv {cv2.__version__}, "
            f"scikit-image {skimage.__version__}, numpy {np.__version__}")
    save_fixture(args.out, cases, j, f, note)
    logger.info("wrote %d cases to %s", len(cases), args.out)


if __name__ == "__main__":
    main()
