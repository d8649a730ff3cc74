"""Datalists: decathlon layout, relative paths, and one clear message for each kind of mistake."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from stbv_monai.data import describe_datalist, ensure_dataset, load_datalist, load_video_pair, write_mask, write_video
from stbv_monai.errors import InputError


def _write_pair(folder: Path, name: str, t: int = 5, shape: tuple[int, int] = (32, 32), empty_at: int | None = None):
    frames = np.random.default_rng(0).random((t, *shape)).astype(np.float32)
    mask = np.zeros((t, *shape), np.uint8)
    mask[:, 8:20, 8:20] = 1
    if empty_at is not None:
        mask[empty_at] = 0
    write_video(folder / "images" / f"{name}.nii.gz", frames)
    write_mask(folder / "labels" / f"{name}.nii.gz", mask)
    return {"image": f"images/{name}.nii.gz", "label": f"labels/{name}.nii.gz", "labelled_frames": [0, t - 1]}


def _datalist(folder: Path, **splits) -> Path:
    path = folder / "datalist.json"
    path.write_text(json.dumps(splits))
    return path


def test_paths_resolve_relative_to_the_datalist(tmp_path):
    entry = _write_pair(tmp_path, "a")
    path = _datalist(tmp_path, training=[entry], test=[entry])
    (loaded,) = load_datalist(path, "training")
    assert Path(loaded["image"]) == tmp_path / "images" / "a.nii.gz"
    assert loaded["labelled_frames"] == [0, 4]
    pair = load_video_pair(loaded)
    assert pair["image"].shape == pair["label"].shape == (5, 32, 32)


def test_describe_counts_labelled_fraction(tmp_path):
    path = _datalist(tmp_path, training=[_write_pair(tmp_path, "a"), _write_pair(tmp_path, "b")])
    summary = describe_datalist(path)
    assert summary["training"] == {"videos": 2, "frames": 10, "labelled_frames": 4, "labelled_fraction": 0.4}


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"image": "images/a.nii.gz", "labelled_frames": [0, 1]}, r"\[training\]\[0\]: entry misses key\(s\) label"),
        ({"image": "images/a.nii.gz", "label": "labels/a.nii.gz", "labelled_frames": [1, 1]}, "duplicated frame"),
        ({"image": "images/a.nii.gz", "label": "labels/a.nii.gz", "labelled_frames": []}, "non-empty list"),
        ({"image": "images/a.nii.gz", "label": "labels/a.nii.gz", "labelled_frames": [0, "2"]}, "integers"),
        ({"image": "images/zz.nii.gz", "label": "labels/a.nii.gz", "labelled_frames": [0, 1]}, "image file not found"),
        ("images/a.nii.gz", "must be an object"),
    ],
)
def test_bad_entries(tmp_path, entry, message):
    _write_pair(tmp_path, "a")
    path = _datalist(tmp_path, training=[entry])
    with pytest.raises(InputError, match=message):
        load_datalist(path, "training")


def test_missing_split_and_bad_json(tmp_path):
    path = _datalist(tmp_path, training=[])
    with pytest.raises(InputError, match="datalist has no 'test' list"):
        load_datalist(path, "test")
    path.write_text("{not json")
    with pytest.raises(InputError, match="datalist.json: not a readable JSON datalist"):
        load_datalist(path, "training")


def test_labelled_frame_out_of_range(tmp_path):
    entry = _write_pair(tmp_path, "a", t=5)
    entry["labelled_frames"] = [0, 5]
    (loaded,) = load_datalist(_datalist(tmp_path, training=[entry]), "training")
    with pytest.raises(InputError, match=r"a\.nii\.gz: labelled frame\(s\) \[5\] out of range: the video's frames are \[0, 4\]"):
        load_video_pair(loaded)


def test_shape_mismatch(tmp_path):
    entry = _write_pair(tmp_path, "a")
    other = _write_pair(tmp_path, "b", shape=(32, 40))
    entry["label"] = other["label"]
    (loaded,) = load_datalist(_datalist(tmp_path, training=[entry]), "training")
    with pytest.raises(InputError, match=r"b\.nii\.gz: mask shape .* differs from video .*a\.nii\.gz"):
        load_video_pair(loaded)


def test_empty_labelled_mask_is_allowed_with_a_warning(tmp_path, caplog):
    entry = _write_pair(tmp_path, "a", empty_at=4)
    (loaded,) = load_datalist(_datalist(tmp_path, training=[entry]), "training")
    with caplog.at_level(logging.WARNING):
        pair = load_video_pair(loaded)
    assert pair["labelled_frames"] == [0, 4]
    assert "labelled frame(s) [4] have an empty mask" in caplog.text


def test_ensure_dataset_never_writes_into_a_users_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(InputError, match="no datalist.json in this non-empty dataset folder"):
        ensure_dataset(tmp_path, {"videos": 1, "frames": 3, "size": 32, "seed": 0})
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]
    path = _datalist(tmp_path, training=[])
    assert ensure_dataset(tmp_path, None) == str(path)


def test_folder_of_videos_with_painted_references(tmp_path):
    from stbv_monai.data import folder_entries

    frames = np.random.default_rng(0).random((6, 16, 16)).astype(np.float32)
    refs = np.zeros((6, 16, 16), np.uint8)
    refs[[1, 4], 4:9, 4:9] = 1
    write_video(tmp_path / "videos" / "a.mp4", frames)
    write_mask(tmp_path / "references" / "a.nii.gz", refs)
    (entry,) = folder_entries(tmp_path)
    assert entry["labelled_frames"] == [1, 4] and entry["image"].endswith("a.mp4")
    write_video(tmp_path / "videos" / "b.nii.gz", frames)
    with pytest.raises(InputError, match="no reference mask video named b"):
        folder_entries(tmp_path)
    write_mask(tmp_path / "references" / "b.nii.gz", np.zeros_like(refs))
    with pytest.raises(InputError, match="no painted frame"):
        folder_entries(tmp_path)
