"""Still-image lesion datasets (BUSI layout, datalists) as 1-frame videos, and the synthetic stills."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch

from stbv_monai.data import (
    LoadStillPaird, LoadVideoPaird, ensure_stills, load_datalist, load_still_entries, make_stills, read_still,
    read_still_mask, still_dataset,
)
from stbv_monai.data.synthetic_stills import is_normal, synthesize_still
from stbv_monai.data.synthetic_video import synthesize_video
from stbv_monai.errors import InputError, find_input_error
from stbv_monai.transforms import clip_training_transforms

REPO = Path(__file__).resolve().parents[1]
H, W = 24, 40


def _image(seed: int = 0, shape: tuple[int, ...] = (H, W)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _mask(rows: slice = slice(4, 12), cols: slice = slice(5, 15), shape: tuple[int, int] = (H, W)) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[rows, cols] = 255
    return mask


def _write(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, arr)
    return path


@pytest.fixture
def busi(tmp_path: Path) -> Path:
    """A BUSI-like folder: two masks to merge, a normal image, JPG and BMP, names with spaces and parentheses."""
    root = tmp_path / "Dataset_BUSI_with_GT"
    _write(root / "benign" / "benign (1).png", _image(1))
    _write(root / "benign" / "benign (1)_mask.png", _mask(cols=slice(0, 10)))
    _write(root / "benign" / "benign (1)_mask_1.png", _mask(cols=slice(30, 40)))
    _write(root / "benign" / "benign (10).png", _image(10))
    _write(root / "benign" / "benign (10)_mask.png", _mask())
    _write(root / "benign" / "benign (2).png", _image(2))
    _write(root / "benign" / "benign (2)_mask.png", _mask())
    _write(root / "normal" / "normal (1).png", _image(3))
    _write(root / "normal" / "normal (1)_mask.png", np.zeros((H, W), np.uint8))
    _write(root / "malignant" / "malignant (1).jpg", _image(4))
    (root / "malignant" / "malignant (1).jpg").rename(root / "malignant" / "malignant (1).JPG")
    _write(root / "malignant" / "malignant (1)_mask.png", _mask())
    _write(root / "malignant" / "m2.bmp", np.stack([_image(5)] * 3, axis=-1))
    _write(root / "malignant" / "m2_mask.bmp", _mask())
    (root / "README.txt").write_text("files at the top level are ignored")
    return root


def test_busi_layout_pairs_sorts_and_merges(busi):
    entries = load_still_entries(busi)
    names = [e["name"] for e in entries]
    assert names == ["benign/benign (1)", "benign/benign (2)", "benign/benign (10)", "malignant/m2",
                     "malignant/malignant (1)", "normal/normal (1)"]
    first = entries[0]
    assert first["image"] == str(busi / "benign" / "benign (1).png")
    assert first["label"] == [str(busi / "benign" / f"benign (1)_mask{k}.png") for k in ("", "_1")]
    mask = read_still_mask(first["label"], (H, W))
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
    assert mask[4:12, :10].all() and mask[4:12, 30:].all() and not mask[4:12, 10:30].any()  # union
    normal = LoadStillPaird()(entries[-1])
    assert normal["label"].shape == (1, H, W) and not normal["label"].any()
    for entry in entries:  # JPG (upper-case suffix) and BMP (RGB) read like PNG
        sample = LoadStillPaird()(entry)
        assert sample["image"].shape == sample["label"].shape == (1, H, W)


def test_read_still_scaling_and_rgb(tmp_path):
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[...] = (200, 100, 50)
    gray = read_still(_write(tmp_path / "rgb.png", rgb))
    assert gray.dtype == np.float32 and gray.shape == (H, W)
    np.testing.assert_allclose(gray, (0.299 * 200 + 0.587 * 100 + 0.114 * 50) / 255, rtol=1e-5)
    deep = np.linspace(0, 1000, H * W).reshape(H, W).astype(np.uint16)
    np.testing.assert_allclose(read_still(_write(tmp_path / "deep.png", deep)), deep / 1000.0, atol=1e-6)
    colour_mask = np.zeros((H, W, 3), np.uint8)
    colour_mask[:5, :5, 0] = 255  # painted in red only: any channel counts
    assert read_still_mask([_write(tmp_path / "cm.png", colour_mask)], (H, W)).sum() == 25


def _write_nifti(path: Path, arr_hw: np.ndarray, extra_axis: bool = False) -> Path:
    data = arr_hw.T[..., None] if extra_axis else arr_hw.T  # (W, H[, 1]) on disk, like the project's videos
    nib.save(nib.Nifti1Image(np.ascontiguousarray(data), np.eye(4)), str(path))
    return path


def _write_dicom(path: Path, arr: np.ndarray) -> Path:
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(path))
    return path


def test_datalist_with_png_nifti_and_dicom(tmp_path):
    img, mask = _image(7), _mask()
    _write(tmp_path / "img" / "a.png", img)
    _write(tmp_path / "mask" / "a.png", mask)
    _write(tmp_path / "mask" / "a_extra.png", _mask(rows=slice(20, 24)))
    _write_nifti(tmp_path / "img" / "b.nii.gz", img)
    _write_nifti(tmp_path / "mask" / "b.nii.gz", (mask > 0).astype(np.uint8), extra_axis=True)
    _write_dicom(tmp_path / "img" / "c.dcm", img)
    _write_dicom(tmp_path / "mask" / "c.dcm", mask)
    training = [{"image": "img/c.dcm", "label": "mask/c.dcm"},
                {"image": str(tmp_path / "img" / "a.png"), "label": ["mask/a.png", "mask/a_extra.png"]},
                {"image": "img/b.nii.gz", "label": "mask/b.nii.gz"}]
    (tmp_path / "stills.json").write_text(json.dumps({"training": training}))
    entries = load_still_entries(tmp_path / "stills.json")
    assert [e["name"] for e in entries] == ["img/a", "img/b", "img/c"]
    assert len(entries[0]["label"]) == 2
    for entry in entries:  # every format gives the PNG's pixels
        sample = LoadStillPaird()(entry)
        np.testing.assert_allclose(sample["image"][0].numpy(), img / 255.0, atol=1e-6)
        expected = mask > 0
        if entry["name"] == "img/a":
            expected = expected | (_mask(rows=slice(20, 24)) > 0)
        np.testing.assert_array_equal(sample["label"][0].numpy(), expected)


def _bad_case(tmp_path: Path, case: str) -> tuple[Path, Path]:
    """Build one bad dataset; return (source to load, the file the message must name)."""
    root = tmp_path / "busi" / "benign"
    good_img, good_mask = _write(root / "x.png", _image()), _write(root / "x_mask.png", _mask())
    lst = tmp_path / "list.json"
    if case == "mask_without_image":
        return root.parent, _write(root / "y_mask.png", _mask())
    if case == "image_without_mask":
        return root.parent, _write(root / "z (1).png", _image())
    if case == "unsupported_in_folder":
        (root / "notes.txt").write_text("x")
        return root.parent, root / "notes.txt"
    if case == "jpg_mask":
        good_mask.unlink()
        return root.parent, _write(root / "x_mask.jpg", _mask())
    if case == "unsupported_in_datalist":
        gif = _write(tmp_path / "a.gif", _image())
        lst.write_text(json.dumps({"training": [{"image": str(gif), "label": str(good_mask)}]}))
        return lst, gif
    if case == "missing_file_in_datalist":
        lst.write_text(json.dumps({"training": [{"image": "nope.png", "label": str(good_mask)}]}))
        return lst, tmp_path / "nope.png"
    contents = {"no_training": {"test": []}, "no_label": {"training": [{"image": str(good_img)}]},
                "no_image": {"training": [{"label": str(good_mask)}]}, "empty_training": {"training": []}}
    if case in contents:
        lst.write_text(json.dumps(contents[case]))
        return lst, lst
    if case == "not_json":
        lst.write_text("{not json")
        return lst, lst
    if case == "missing_source":
        return tmp_path / "absent", tmp_path / "absent"
    if case == "empty_folder":
        (tmp_path / "empty" / "benign").mkdir(parents=True)
        return tmp_path / "empty", tmp_path / "empty"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["mask_without_image", "image_without_mask", "unsupported_in_folder", "jpg_mask",
                                  "unsupported_in_datalist", "missing_file_in_datalist", "no_training", "no_label",
                                  "no_image", "empty_training", "not_json", "missing_source", "empty_folder"])
def test_listing_errors_name_the_file(tmp_path, case):
    source, culprit = _bad_case(tmp_path, case)
    with pytest.raises(InputError) as err:
        load_still_entries(source)
    assert str(culprit) in str(err.value) and "\n" not in str(err.value)


def _bad_read(tmp_path: Path, case: str) -> tuple[dict, Path]:
    """An entry that lists fine but fails when read; return (entry, the file the message must name)."""
    img, mask = tmp_path / "x.png", tmp_path / "x_mask.png"
    _write(img, _image())
    _write(mask, _mask())
    if case == "size_mismatch":
        _write(mask, _mask(shape=(H, W + 2)))
        return {"image": str(img), "label": [str(mask)]}, mask
    if case == "mask_values":
        _write(mask, (_mask() // 2))
        return {"image": str(img), "label": [str(mask)]}, mask
    if case == "corrupt_image":
        img.write_bytes(b"\x89PNG this is not an image")
        return {"image": str(img), "label": [str(mask)]}, img
    if case == "corrupt_mask":
        mask.write_bytes(b"garbage")
        return {"image": str(img), "label": [str(mask)]}, mask
    if case == "multiframe_dicom":
        dcm = _write_dicom(tmp_path / "cine.dcm", np.stack([_image(s) for s in range(3)]))
        return {"image": str(dcm), "label": [str(mask)]}, dcm
    if case == "volume_nifti":
        nii = tmp_path / "vol.nii.gz"
        nib.save(nib.Nifti1Image(np.zeros((W, H, 3), np.uint8), np.eye(4)), str(nii))
        return {"image": str(nii), "label": [str(mask)]}, nii
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["size_mismatch", "mask_values", "corrupt_image", "corrupt_mask",
                                  "multiframe_dicom", "volume_nifti"])
def test_read_errors_name_the_file(tmp_path, case):
    entry, culprit = _bad_read(tmp_path, case)
    with pytest.raises(InputError) as err:
        LoadStillPaird()(entry)
    assert str(culprit) in str(err.value) and "\n" not in str(err.value)


def test_load_still_matches_load_video_conventions(busi, disc_dataset):
    video = LoadVideoPaird()(load_datalist(disc_dataset, "training")[0])
    still = LoadStillPaird()(load_still_entries(busi)[0])
    assert set(still) - {"name"} == set(video) - {"id"}
    for key in ("image", "label"):
        assert type(still[key]) is type(video[key]) is torch.Tensor
        assert still[key].dtype == video[key].dtype == torch.float32 and still[key].ndim == video[key].ndim == 3
    assert still["image"].shape[0] == 1 and 0.0 <= float(still["image"].min()) <= float(still["image"].max()) <= 1.0
    assert set(torch.unique(still["label"]).tolist()) == {0.0, 1.0}
    assert still["labelled_frames"] == [0] and still["spacing"] == (1.0, 1.0) and still["spacing_known"] is False
    assert still["image_path"].endswith("benign (1).png") and still["label_path"].endswith("benign (1)_mask.png")
    assert type(still["spacing"]) is type(video["spacing"]) and isinstance(still["spacing_known"], bool)


def test_max_side_shrinks_large_images_only(busi):
    entry = load_still_entries(busi)[0]
    full = LoadStillPaird()(entry)
    small = LoadStillPaird(max_side=20)(entry)
    assert small["image"].shape == small["label"].shape == (1, 12, 20)
    assert type(small["image"]) is torch.Tensor and small["label"].dtype == torch.float32
    assert set(torch.unique(small["label"]).tolist()) == {0.0, 1.0}
    assert abs(float(small["image"].mean()) - float(full["image"].mean())) < 0.02  # area averaging
    untouched = LoadStillPaird(max_side=64)(entry)
    assert torch.equal(untouched["image"], full["image"])


def test_still_dataset_feeds_the_bootstrap_clip_sampler(busi):
    ds = still_dataset(load_still_entries(busi), clip_training_transforms((32, 32), mode="bootstrap"), max_side=32)
    for i in range(len(ds)):
        sample = ds[i]
        assert sample["image"].shape == sample["label"].shape == (3, 32, 32)
        assert sample["frame_index"].tolist() == [0, 0, 0] and sample["source"].tolist() == [1, 1, 1]


def test_stcs_needs_real_videos(busi):
    """The space-time consistency triplet needs 3 frames: stills must be sampled with ``stcs=False``."""
    ds = still_dataset(load_still_entries(busi)[:1], clip_training_transforms((32, 32), mode="bootstrap", stcs=True))
    with pytest.raises(Exception) as err:
        ds[0]
    assert "at least 3 frames" in str(find_input_error(err.value))


COUNT, SIZE, SEED = 8, 48, 3


@pytest.fixture(scope="module")
def stills(tmp_path_factory) -> Path:
    return make_stills(tmp_path_factory.mktemp("stills") / "out", COUNT, SIZE, SEED, workers=1)


def test_make_stills_layout(stills):
    entries = load_still_entries(stills)
    assert len(entries) == COUNT and {e["name"].split("/")[0] for e in entries} <= {"benign", "malignant", "normal"}
    manifest = load_still_entries(stills / "stills.json")
    assert [(e["image"], e["label"]) for e in manifest] == [(e["image"], e["label"]) for e in entries]
    classes = {e["name"].split("/")[0] for e in entries}
    assert "normal" in classes and len(classes) >= 2
    for entry in entries:
        image, mask = iio.imread(entry["image"]), iio.imread(entry["label"][0])
        assert image.dtype == mask.dtype == np.uint8 and image.shape == mask.shape == (SIZE, SIZE)
        assert set(np.unique(mask)) <= {0, 255}
        assert mask.any() == (not entry["name"].startswith("normal/"))


def test_make_stills_is_deterministic_whatever_the_workers(stills, tmp_path):
    again = make_stills(tmp_path / "p", COUNT, SIZE, SEED, workers=2)
    for a in sorted(p for p in stills.rglob("*.png")):
        assert (again / a.relative_to(stills)).read_bytes() == a.read_bytes()
    other = synthesize_still(0, SIZE, SEED + 1)[0]
    assert np.abs(other - synthesize_still(0, SIZE, SEED)[0]).mean() > 0.05


def test_stills_come_from_other_patients_than_the_videos():
    for index in range(3):
        still = synthesize_still(index, SIZE, SEED, is_normal(index, 0.15))[0]
        frames = synthesize_video(index, 6, SIZE, SEED).frames
        assert min(float(np.abs(still - f).mean()) for f in frames) > 0.05


def test_normal_share_is_spread_evenly():
    flags = [is_normal(i, 0.15) for i in range(200)]
    assert sum(flags) == 30 and not any(flags[:6])
    assert not any(is_normal(i, 0.0) for i in range(50))


def test_make_stills_refuses_foreign_folders_and_replaces_its_own(stills, tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("user data")
    with pytest.raises(InputError, match="refusing"):
        make_stills(foreign, 2, 32)
    assert (foreign / "keep.txt").read_text() == "user data"
    out = make_stills(tmp_path / "regen", 8, 32, workers=1)
    make_stills(out, 2, 32, workers=1)  # a previous generation is replaced as a whole: no stale images
    assert len(load_still_entries(out)) == 2
    for kwargs in ({"count": 0}, {"size": 16}, {"normal_fraction": 1.0}, {"workers": 0}):
        with pytest.raises(InputError):
            make_stills(tmp_path / "bad", **{"count": 2, **kwargs})


def test_ensure_stills(stills, tmp_path):
    assert ensure_stills(stills, None) == str(stills)
    assert ensure_stills(stills / "stills.json", None) == str(stills / "stills.json")
    with pytest.raises(InputError, match=str(tmp_path / "absent")):
        ensure_stills(tmp_path / "absent", None)
    with pytest.raises(InputError, match="not found"):
        ensure_stills(tmp_path / "absent.json", {"count": 2, "size": 32})
    (tmp_path / "empty").mkdir()
    made = ensure_stills(tmp_path / "empty", {"count": 2, "size": 32, "workers": 1})
    assert made == str(tmp_path / "empty") and len(load_still_entries(made)) == 2
    assert ensure_stills(tmp_path / "new", {"count": 2, "size": 32, "workers": 1}) == str(tmp_path / "new")


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "make_synthetic_data.py"), *args],
                          capture_output=True, text=True, cwd=REPO, timeout=120)


def test_cli_writes_stills(tmp_path):
    done = _run_cli("--out", str(tmp_path / "s"), "--stills", "7", "--size", "32", "--workers", "1")
    assert done.returncode == 0, done.stderr
    assert len(load_still_entries(tmp_path / "s")) == 7 and not (tmp_path / "s" / "datalist.json").exists()
    for args in (("--stills", "0"), ("--stills", "2", "--preview", str(tmp_path / "p.png"))):
        bad = _run_cli("--out", str(tmp_path / "b"), *args)
        assert bad.returncode == 2 and bad.stderr.startswith("error:") and bad.stderr.count("\n") == 1
