"""Synthetic breast-ultrasound dataset: files and datalist, determinism, lesion visibility, image realism checks."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from stbv_monai.data import load_datalist, read_mask, read_video
from stbv_monai.data.synthetic import choose_labelled_frames, make_dataset, split_counts, synthesize_video
from stbv_monai.data.synthetic_preview import save_preview
from stbv_monai.errors import InputError

REPO = Path(__file__).resolve().parents[1]
VIDEOS, FRAMES, SIZE, SEED = 3, 12, 64, 7


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """A tiny dataset generated in-process; returns its datalist."""
    return make_dataset(tmp_path_factory.mktemp("synthetic") / "data", VIDEOS, FRAMES, SIZE, SEED, workers=1)


def _cli():
    spec = importlib.util.spec_from_file_location("make_synthetic_data", REPO / "scripts" / "make_synthetic_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_datalist_layout(dataset):
    raw = json.loads(dataset.read_text())
    assert {"training", "validation", "test", "frames", "size", "seed", "description"} <= set(raw)
    assert (raw["frames"], raw["size"], raw["seed"]) == (FRAMES, SIZE, SEED)
    assert [len(raw[s]) for s in ("training", "validation", "test")] == [1, 1, 1]
    names = set()
    for split in ("training", "validation", "test"):
        for entry in raw[split]:
            assert entry["image"].startswith("images/") and entry["image"].endswith(".nii.gz")
            assert entry["label"] == entry["image"].replace("images/", "labels/")
            assert (dataset.parent / entry["image"]).is_file() and (dataset.parent / entry["label"]).is_file()
            t1, t2 = entry["labelled_frames"]
            assert 0 <= t1 < t2 < FRAMES
            names.add(entry["image"])
        assert len(load_datalist(dataset, split)) == len(raw[split])  # the project's own checks accept it
    assert len(names) == VIDEOS


def test_files_hold_video_and_masks(dataset):
    for entry in load_datalist(dataset, "training") + load_datalist(dataset, "test"):
        video, mask = read_video(entry["image"]), read_mask(entry["label"])
        assert video.frames.shape == mask.shape == (FRAMES, SIZE, SIZE)
        assert video.frames.dtype == np.float32 and mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 1}
        assert video.spacing == pytest.approx((40.0 / SIZE, 40.0 / SIZE))
        assert all(mask[t].any() for t in entry["labelled_frames"])


def test_written_files_match_the_generator(dataset):
    entry = load_datalist(dataset, "training")[0]
    video = synthesize_video(0, FRAMES, SIZE, SEED)
    np.testing.assert_array_equal(read_mask(entry["label"]), video.mask)
    np.testing.assert_allclose(read_video(entry["image"]).frames, video.frames, atol=0.5 / 255 + 1e-6)


def test_parallel_generation_gives_identical_files(dataset, tmp_path):
    parallel = make_dataset(tmp_path / "p", VIDEOS, FRAMES, SIZE, SEED, workers=2)
    assert json.loads(parallel.read_text()) == json.loads(dataset.read_text())
    for entry in json.loads(dataset.read_text())["test"]:
        for key in ("image", "label"):
            a = read_video(dataset.parent / entry[key]).frames
            np.testing.assert_array_equal(a, read_video(parallel.parent / entry[key]).frames)


def test_deterministic_for_a_seed_and_different_across_seeds():
    a, b = synthesize_video(1, 8, 48, seed=3), synthesize_video(1, 8, 48, seed=3)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.mask, b.mask)
    c = synthesize_video(1, 8, 48, seed=4)
    assert np.abs(a.frames - c.frames).mean() > 0.05
    assert not np.array_equal(a.mask, c.mask)


def test_lesion_leaves_the_view_when_asked():
    for index in range(4):
        visible = synthesize_video(index, 24, 48, seed=2, exit_prob=1.0).mask.any(axis=(1, 2))
        assert not visible[0] or not visible[-1], f"video {index}: lesion never leaves the view"
        assert visible.sum() >= 2
    for index in range(4):
        assert synthesize_video(index, 24, 48, seed=2, exit_prob=0.0).mask.any(axis=(1, 2)).all()


def test_lesion_is_hypoechoic():
    """Inside the mask is darker than a 3-pixel ring of surrounding tissue, in every video."""
    for index in range(6):
        video = synthesize_video(index, 10, 64, seed=11)
        mask = video.mask.astype(bool)
        ring = np.stack([ndi.binary_dilation(m, iterations=3) for m in mask]) & ~mask
        assert video.frames[mask].mean() < video.frames[ring].mean() - 0.1, video.kind


def test_speckle_is_temporally_correlated():
    """Speckle follows the tissue: consecutive frames correlate far more than frames 20 apart."""
    video = synthesize_video(0, 40, 64, seed=5, exit_prob=0.0)
    detail = video.frames - ndi.gaussian_filter(video.frames, (0, 2, 2))

    def corr(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])

    near = np.mean([corr(detail[t], detail[t + 1]) for t in range(39)])
    far = np.mean([corr(detail[t], detail[t + 20]) for t in range(20)])
    assert near > 0.75
    assert far < near - 0.4


def test_labelled_frames_are_early_and_late_where_the_lesion_shows():
    mask = np.zeros((30, 8, 8), np.uint8)
    mask[5:25, 2:6, 2:6] = 1
    mask[5:7, 2:3, 2:3] = 0
    t1, t2 = choose_labelled_frames(mask, np.random.default_rng(0))
    assert 5 <= t1 <= 12 and 18 <= t2 <= 24


def test_split_counts():
    assert split_counts(32) == {"training": 19, "validation": 5, "test": 8}
    assert split_counts(3) == {"training": 1, "validation": 1, "test": 1}
    assert sum(split_counts(1).values()) == 1


def test_preview_is_a_png(dataset, tmp_path):
    out = save_preview(dataset, tmp_path / "sheet.png", videos=2, frames=3)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 2000


@pytest.mark.parametrize("kwargs, word", [({"videos": 0}, "videos"), ({"frames": 2}, "frames"),
                                          ({"size": 31}, "size"), ({"exit_prob": 1.5}, "exit_prob")])
def test_bad_arguments_raise_input_error(tmp_path, kwargs, word):
    args = {"videos": 2, "frames": 5, "size": 32, "seed": 0, **kwargs}
    with pytest.raises(InputError, match=word):
        make_dataset(tmp_path / "d", **args)
    assert not (tmp_path / "d").exists()


def test_cli_bad_argument_is_one_line(tmp_path, capsys):
    assert _cli().main(["--out", str(tmp_path / "d"), "--videos", "0"]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "videos" in err and "Traceback" not in err


def test_cli_writes_dataset_and_preview(tmp_path):
    png = tmp_path / "preview.png"
    argv = ["--out", str(tmp_path / "d"), "--videos", "3", "--frames", "4", "--size", "32", "--workers", "1",
            "--preview", str(png)]
    assert _cli().main(argv) == 0
    assert (tmp_path / "d" / "datalist.json").is_file() and png.read_bytes()[:4] == b"\x89PNG"
