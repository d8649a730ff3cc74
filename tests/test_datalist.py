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


# ----------------------------------------------------------------------------- ids, outside paths, optional splits


def test_two_sites_with_the_same_file_name_get_unique_ids(tmp_path):
    from conftest import write_two_site_dataset

    path = write_two_site_dataset(tmp_path)
    ids = [e["id"] for e in load_datalist(path, "training")]
    assert ids == ["siteA__images__bus_0000", "siteB__images__bus_0000", "siteB__images__bus_0001",
                   "up__shared__images__bus_0002"]
    assert [e["id"] for e in load_datalist(path, "test")] == ids[:2]  # the same video has the same id in every split
    # where file names are unique, the id stays the file name: existing outputs keep their names
    plain = _datalist(tmp_path / "plain", training=[_write_pair(tmp_path / "plain", "a")])
    assert [e["id"] for e in load_datalist(plain, "training")] == ["a"]


def test_a_video_listed_twice_in_a_split_is_an_error(tmp_path):
    entry = _write_pair(tmp_path, "a")
    path = _datalist(tmp_path, training=[entry, dict(entry, image="./images/../images/a.nii.gz")], test=[entry])
    with pytest.raises(InputError, match=r"datalist\.json \[training\]\[1\]: video .*a\.nii\.gz is already listed "
                                         r"at \[training\]\[0\]"):
        load_datalist(path, "training")
    assert len(load_datalist(path, "test")) == 1  # listed in two splits is fine


def test_videos_whose_ids_still_collide_are_an_error(tmp_path):
    entries = [_write_pair(tmp_path, "a"), _write_pair(tmp_path / "x", "a"), _write_pair(tmp_path, "a", t=6)]
    entries[1] = {k: f"x/{v}" if k in ("image", "label") else v for k, v in entries[1].items()}
    write_video(tmp_path / "images" / "a.dcm", np.zeros((5, 32, 32), np.float32))
    entries[2]["image"] = "images/a.dcm"  # images/a.nii.gz and images/a.dcm: both images__a
    path = _datalist(tmp_path, training=entries)
    with pytest.raises(InputError, match=r"datalist\.json: videos .*images/a\.(dcm|nii\.gz) and "
                                         r".*images/a\.(dcm|nii\.gz) get the same id 'images__a'"):
        load_datalist(path, "training")


def test_paths_outside_the_dataset_folder_are_read_and_logged_once(tmp_path, caplog):
    outside = _write_pair(tmp_path / "shared", "b")
    entry = {**outside, "image": f"../shared/{outside['image']}", "label": str(tmp_path / "shared" / outside["label"])}
    path = _datalist(tmp_path / "data", training=[_write_pair(tmp_path / "data", "a"), entry], test=[entry])
    with caplog.at_level(logging.INFO):
        for split in ("training", "test", "training"):
            assert Path(load_datalist(path, split)[-1]["image"]) == tmp_path / "shared" / "images" / "b.nii.gz"
    lines = [r.getMessage() for r in caplog.records if "outside the dataset folder" in r.getMessage()]
    assert len(lines) == 1, lines  # once per datalist, not per split or call
    assert lines[0].startswith(f"{path}: 2 path(s) lead outside the dataset folder {tmp_path / 'data'}")


def test_validation_split_is_optional(tmp_path):
    entry = _write_pair(tmp_path, "a")
    path = _datalist(tmp_path, training=[entry], test=[entry])
    assert load_datalist(path, "validation") == []
    assert "validation" not in describe_datalist(path)
    with pytest.raises(InputError, match="datalist has no 'test' list"):
        load_datalist(_datalist(tmp_path, training=[entry]), "test")  # training and test stay required


def test_folder_of_videos_with_the_same_name_twice_is_an_error(tmp_path):
    from stbv_monai.data import folder_entries

    frames = np.random.default_rng(0).random((4, 16, 16)).astype(np.float32)
    refs = np.zeros((4, 16, 16), np.uint8)
    refs[1, 4:9, 4:9] = 1
    write_video(tmp_path / "videos" / "a.mp4", frames)
    write_video(tmp_path / "videos" / "a.nii.gz", frames)
    write_mask(tmp_path / "references" / "a.nii.gz", refs)
    with pytest.raises(InputError, match=r"a\.(mp4|nii\.gz): another video in .*videos has the same name"):
        folder_entries(tmp_path)
