"""Shared fixtures: a tiny on-disk dataset of moving-disc videos (fast, deterministic); one torch thread."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

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


#: The videos of :func:`write_two_site_dataset`: datalist image path -> labelled frames.
TWO_SITE_VIDEOS = {
    "siteA/images/bus_0000.nii.gz": [3],
    "siteB/images/bus_0000.nii.gz": [1, 6],
    "siteB/images/bus_0001.nii.gz": [0, 2, 4, 5, 7],
    "../shared/images/bus_0002.nii.gz": [2, 5],
}


def write_two_site_dataset(root: Path, t: int = 8, size: int = 32) -> Path:
    """A multi-site layout that used to lose data: ``root/data/datalist.json``, no validation split.

    Two sites with the same file name (``siteA/`` and ``siteB/images/bus_0000.nii.gz``; siteB's
    disc is mirrored so their masks differ), a video on shared storage outside the dataset folder
    (``../shared/``), and 1, 2, 5 and 2 labelled frames (:data:`TWO_SITE_VIDEOS`). The test split
    holds the two ``bus_0000`` videos.
    """
    data = root / "data"
    entries = []
    for i, (image, labelled) in enumerate(TWO_SITE_VIDEOS.items()):
        frames, mask = disc_video(t, size, seed=i)
        if "siteB" in image:
            frames, mask = frames[:, :, ::-1].copy(), mask[:, :, ::-1].copy()
        label = image.replace("/images/", "/labels/")
        write_video(data / image, frames, spacing=(0.5, 0.5))
        write_mask(data / label, mask, spacing=(0.5, 0.5))
        entries.append({"image": image, "label": label, "labelled_frames": labelled})
    path = data / "datalist.json"
    path.write_text(json.dumps({"training": entries, "test": entries[:2]}))
    return path


@pytest.fixture
def one_torch_thread():
    """Transforms run in DataLoader workers with one torch thread; tiny convolutions are slower with more."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
