"""Shared fixtures: a tiny on-disk dataset of moving-disc videos (fast, deterministic)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from stbv_monai.data import write_mask, write_video


def disc_video(t: int = 8, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A dark disc drifting right over a noisy bright background, and its masks."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    mask = np.stack([(yy - size / 2) ** 2 + (xx - size / 3 - k) ** 2 < (size / 6) ** 2 for k in range(t)])
    frames = 0.7 + 0.1 * rng.standard_normal((t, size, size))
    frames[mask] = 0.2
    return np.clip(frames, 0, 1).astype(np.float32), mask.astype(np.uint8)


def write_disc_dataset(root: Path, n_videos: int = 3, t: int = 8, size: int = 32) -> Path:
    """``root/datalist.json`` with every video in every split; labelled frames 1 and t-2."""
    entries = []
    for i in range(n_videos):
        frames, mask = disc_video(t, size, seed=i)
        write_video(root / "images" / f"vid{i}.nii.gz", frames, spacing=(0.5, 0.5))
        write_mask(root / "labels" / f"vid{i}.nii.gz", mask, spacing=(0.5, 0.5))
        entries.append({"image": f"images/vid{i}.nii.gz", "label": f"labels/vid{i}.nii.gz", "labelled_frames": [1, t - 2]})
    path = root / "datalist.json"
    path.write_text(json.dumps({"training": entries, "validation": entries, "test": entries}))
    return path


@pytest.fixture
def disc_dataset(tmp_path: Path) -> Path:
    return write_disc_dataset(tmp_path / "data")
