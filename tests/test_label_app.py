"""The MONAI Label app: its pure parts (frame choice, reference rules, served model, import), then
end to end with one real ``monailabel start_server`` for the module, driven by ``MONAILabelClient``:
tasks listed, propagation, the correction round trip, next sample, bad input, and two-shot
training whose model is then served without a restart."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import nibabel as nib
import numpy as np
import pytest
from conftest import disc_video
from label_utils import ServerProcess, start_server, wait_until_serving, write_label, write_studies

from stbv_monai.data import read_mask, read_video, write_mask, write_video
from stbv_monai.errors import InputError
from stbv_monai.label import import_videos
from stbv_monai.label.app_config import AppConfig
from stbv_monai.label.frame_selection import pick_reference_frames, thumbnails
from stbv_monai.label.references import PreviousResult, choose_references

client_module = pytest.importorskip("monailabel.client.client", reason="needs the 'label' extra (MONAI Label)")
MONAILabelClient = client_module.MONAILabelClient
MONAILabelClientException = client_module.MONAILabelClientException
slow = pytest.mark.slow

T, SIZE = 8, 32
PAINTED = (1, 6)
VIDEOS = ("vid0", "vid1", "vid2")
TINY = "configs/presets/tiny.yaml"


# ----------------------------------------------------------------------------- pure parts


def test_two_frames_are_the_typical_frames_of_the_stretches_each_reference_covers():
    rng = np.random.default_rng(0)
    video = np.concatenate([np.full((10, 32, 32), 0.2), np.full((20, 32, 32), 0.8)])
    video = video + 0.01 * rng.standard_normal(video.shape)
    a, b = pick_reference_frames(thumbnails(video)).frames
    assert a < 10 <= b and (a + b) // 2 == 9  # the nearest-reference split falls on the cut
    static = pick_reference_frames(np.zeros((10, 4, 4)), min_gap=3)
    assert static.frames == (2, 7) and static.cost < 1e-2  # ties: temporally central frames


def test_reference_rules_painted_explicit_and_edited_result():
    label = np.zeros((6, 8, 8), np.uint8)
    label[1, 2:4, 2:4] = label[4, 3:6, 3:6] = 1
    assert choose_references(label).frames == [1, 4]
    explicit = choose_references(label, explicit=[1, 2, 4])
    assert explicit.frames == [1, 2, 4] and explicit.source == "explicit"  # frame 2: "no lesion here"
    result = np.repeat(label[1:2], 6, axis=0)  # a previous result painted everywhere
    previous = PreviousResult.of([1, 4], result)
    edited = result.copy()
    edited[2] = 0  # erased: lesion absent on frame 2
    choice = choose_references(edited, previous=previous)
    assert (choice.frames, choice.source, choice.corrected) == ([1, 2, 4], "edited_result", [2])
    assert choose_references(label, previous=previous).source == "painted"  # a fresh sparse label
    with pytest.raises(InputError, match="no painted frame"):
        choose_references(np.zeros_like(label))


def test_the_newer_of_base_and_app_model_is_served(tmp_path):
    base, model_dir = tmp_path / "base.pt", tmp_path / "app"
    config = AppConfig.from_conf(tmp_path, {"model_path": str(base), "model_dir": str(model_dir)})
    assert config.served_model() is None
    base.write_bytes(b"x")
    assert config.served_model() == base
    config.trained_model.parent.mkdir(parents=True)
    config.trained_model.write_bytes(b"y")
    os.utime(base, (1, 1))
    assert config.served_model() == config.trained_model
    os.utime(base, None)
    os.utime(config.trained_model, (1, 1))
    assert config.served_model() == base
    assert AppConfig.from_conf(tmp_path, {"model_path": "none"}).base_model is None
    with pytest.raises(InputError, match="network"):
        AppConfig.from_conf(tmp_path, {"network": "unet"})


def test_import_videos_converts_frame_folders_and_masks_and_reports_bad_videos(tmp_path, capsys):
    frames, mask = disc_video(T, SIZE)
    write_video(tmp_path / "src" / "clip 1", frames)  # a PNG frame folder
    write_video(tmp_path / "src" / "bad.nii.gz", frames[:2])
    write_mask(tmp_path / "masks" / "clip 1", mask)
    studies = tmp_path / "studies"
    assert import_videos.main([str(tmp_path / "src"), str(studies), "--labels", str(tmp_path / "masks")]) == 1
    assert "bad.nii.gz" in capsys.readouterr().err and not (studies / "bad.nii.gz").exists()
    np.testing.assert_allclose(read_video(studies / "clip_1.nii.gz").frames, frames, atol=1 / 255)
    np.testing.assert_array_equal(read_mask(studies / "labels" / "final" / "clip_1.nii.gz"), mask)
    assert nib.load(studies / "clip_1.nii.gz").shape == (SIZE, SIZE, T)  # time on the third axis


# ----------------------------------------------------------------------------- the server

@dataclass
class App:
    client: MONAILabelClient
    server: ServerProcess
    workdir: Path
    studies: Path
    model_dir: Path
    masks: dict[str, np.ndarray]

    def sparse_label(self, video: str, frames=PAINTED, name: str | None = None) -> str:
        """The video's true masks on ``frames`` only, as a label file."""
        label = np.zeros_like(self.masks[video])
        label[list(frames)] = self.masks[video][list(frames)]
        return write_label(self.workdir / "labels" / (name or f"{video}_{'_'.join(map(str, frames))}.nii.gz"), label)

    def infer(self, video: str, label: str | None = None, **params):
        path, out = self.client.infer("propagate", video, dict(params), label_in=label)
        return nib.load(path).get_fdata().transpose(2, 1, 0), out

    def saved_label(self, video: str) -> Path:
        return self.studies / "labels" / "final" / f"{video}.nii.gz"

    def label_info(self, video: str) -> dict:
        return self.client.datastore()["objects"][video]["labels"]["final"]["info"]


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> App:
    workdir = tmp_path_factory.mktemp("label_app")
    videos, masks = {}, {}
    for i, name in enumerate(VIDEOS):
        videos[name], masks[name] = disc_video(T, SIZE, seed=i)
    videos["short"] = disc_video(2, SIZE, seed=9)[0]  # a volume of 2 frames: not a video
    studies = write_studies(workdir / "studies", videos)
    model_dir = workdir / "model"
    server = start_server(studies, workdir, {"model_path": "none", "model_dir": str(model_dir), "device": "cpu"})
    client = MONAILabelClient(server.url, tmpdir=str(workdir / "client"))
    try:
        wait_until_serving(server, client)
        yield App(client, server, workdir, studies, model_dir, masks)
    finally:
        server.stop()


def expect_error(call, status: int, *fragments: str) -> str:
    """Run ``call``; it must fail with HTTP ``status`` and a message holding every fragment."""
    with pytest.raises(MONAILabelClientException) as info:
        call()
    msg = info.value.msg
    assert f"Status: {status}" in msg, msg
    for fragment in fragments:
        assert fragment in msg, msg
    return msg



@slow
def test_info_lists_the_tasks_and_the_datastore_the_videos(app):
    info = app.client.info()
    assert info["models"]["propagate"]["type"] == "segmentation"
    assert info["models"]["propagate"]["dimension"] == 3
    assert "lesion" in info["labels"]
    assert "two_shot" in info["trainers"]
    assert "two_frames" in info["strategies"]
    assert set(VIDEOS) <= set(app.client.datastore()["objects"])


@slow
def test_propagate_returns_the_mask_video_with_the_references_reproduced(app):
    label = app.sparse_label("vid0")
    mask, params = app.infer("vid0", label)
    assert mask.shape == (T, SIZE, SIZE)
    assert set(np.unique(mask)) <= {0, 1}
    for t in PAINTED:
        np.testing.assert_array_equal(mask[t], app.masks["vid0"][t])
    assert params["references"] == list(PAINTED) and params["reference_source"] == "painted"
    assert params["frame_reference"] == [1, 1, 1, 1, 6, 6, 6, 6]
    assert len(params["frame_confidence"]) == T and params["model"]["untrained"] is True
    image = nib.load(app.studies / "vid0.nii.gz")
    result, _ = app.client.infer("propagate", "vid0", {}, label_in=label)
    np.testing.assert_allclose(nib.load(result).affine, image.affine)  # the video's geometry


@slow
def test_a_corrected_frame_becomes_a_reference_and_changes_the_result_near_it(app):
    # threshold 0: a result painted on every frame, whatever the untrained network predicts
    first, params = app.infer("vid2", app.sparse_label("vid2"), threshold=0.0)
    assert params["references"] == [1, 6] and first.all(axis=(1, 2))[[0, 2, 3, 4, 5, 7]].all()
    corrected = first.astype(np.uint8)
    corrected[3] = 0
    corrected[3, 4:14, 4:14] = 1  # the annotator redraws frame 3
    path = write_label(app.workdir / "labels" / "vid2_corrected.nii.gz", corrected)
    second, params = app.infer("vid2", path)
    assert params["reference_source"] == "edited_result"
    assert params["references"] == [1, 3, 6] and params["corrected_frames"] == [3]
    np.testing.assert_array_equal(second[3], corrected[3])
    # soft outputs from the same references: frame 4 is now propagated from frame 3, frames far
    # from it still come from the same passes as before
    before, _ = app.infer("vid2", path, reference_frames=[1, 6], probabilities=True)
    after, _ = app.infer("vid2", path, reference_frames="1, 3, 6", probabilities=True)
    assert np.abs(after[4] - before[4]).max() > 1e-4
    for t in (0, 2, 5, 7):
        np.testing.assert_allclose(after[t], before[t], atol=1e-5)


@slow
def test_saving_a_label_records_its_reference_frames_and_propagate_can_use_it(app):
    app.client.save_label("vid1", app.sparse_label("vid1"), tag="final")
    info = app.label_info("vid1")
    assert info["reference_frames"] == list(PAINTED) and info["reference_source"] == "painted"
    # explicit reference frames travel with the save: an empty listed frame means "no lesion"
    app.client.save_label("vid1", app.sparse_label("vid1"), tag="final", params={"reference_frames": [1, 4, 6]})
    assert app.label_info("vid1")["reference_frames"] == [1, 4, 6]
    mask, params = app.infer("vid1")  # no label sent: the saved one
    assert params["label_origin"] == "saved:final" and params["references"] == [1, 6]
    np.testing.assert_array_equal(mask[6], app.masks["vid1"][6])


@slow
def test_next_sample_proposes_an_unlabelled_video_and_two_frames_apart(app):
    store = app.client.datastore()["objects"]
    unlabelled = {v for v in VIDEOS if "final" not in store[v]["labels"]}
    assert unlabelled, "an earlier test saved every video"
    res = app.client.next_sample("two_frames", {})
    assert res["id"] in unlabelled  # never the 2-frame volume, never a labelled video
    t1, t2 = res["frames"]
    assert 0 <= t1 < t2 < T and t2 - t1 >= res["min_gap"] >= 1
    res = app.client.next_sample("two_frames", {"image": "vid1", "min_gap": 4})
    assert res["id"] == "vid1" and res["frames"][1] - res["frames"][0] >= 4
    expect_error(lambda: app.client.next_sample("two_frames", {"image": "nope"}), 404, "nope")
    expect_error(lambda: app.client.next_sample("two_frames", {"image": "short"}), 400, "2 frame")


@slow
def test_bad_input_gets_a_clear_4xx_and_leaves_the_saved_label_untouched(app):
    app.client.save_label("vid0", app.sparse_label("vid0"), tag="final")
    saved = app.saved_label("vid0").read_bytes()
    wrong_shape = write_label(app.workdir / "labels" / "wrong_shape.nii.gz", np.ones((T, 16, 16), np.uint8))
    empty = write_label(app.workdir / "labels" / "empty.nii.gz", np.zeros((T, SIZE, SIZE), np.uint8))
    png = app.workdir / "labels" / "frame.png"
    iio.imwrite(png, (255 * disc_video(1, SIZE)[0][0]).astype(np.uint8))

    expect_error(lambda: app.infer("vid0", wrong_shape), 400, "shape")
    expect_error(lambda: app.infer("vid0", empty), 400, "no painted frame")
    expect_error(lambda: app.infer("vid0", app.sparse_label("vid0"), reference_frames=[1, 99]), 400, "99")
    expect_error(lambda: app.infer("vid2"), 400, "vid2", "no label")  # nothing sent, nothing saved
    expect_error(lambda: app.infer("nope", app.sparse_label("vid0")), 404, "nope")
    expect_error(lambda: app.infer("short", app.sparse_label("vid0")), 400, "short", "2 frame")
    expect_error(lambda: app.client.infer("propagate", "", {}, label_in=empty, file=str(png)), 400, "format")
    expect_error(lambda: app.client.save_label("vid0", wrong_shape, tag="final"), 400, "shape")
    expect_error(lambda: app.client.save_label("vid0", empty, tag="final"), 400, "no painted frame")
    expect_error(lambda: app.client.save_label("nope", empty, tag="final"), 404, "nope")

    assert app.saved_label("vid0").read_bytes() == saved
    mask, params = app.infer("vid0")  # still serving, from the intact saved label
    assert params["references"] == list(PAINTED)
    np.testing.assert_array_equal(mask[1], app.masks["vid0"][1])


@slow
def test_two_shot_training_publishes_a_model_that_propagate_serves_without_restart(app):
    for video in ("vid0", "vid1"):
        app.client.save_label(video, app.sparse_label(video), tag="final")
    label = app.sparse_label("vid2")
    before, params = app.infer("vid2", label, reference_frames=[1, 6], probabilities=True)
    assert params["model"]["untrained"] is True

    task = app.client.train_start("two_shot", {"config_files": [TINY]})
    assert task["status"] in ("SUBMITTED", "RUNNING"), task
    deadline = time.monotonic() + 240
    status = task
    while time.monotonic() < deadline:
        status = app.client.train_status()
        if status["status"] not in ("SUBMITTED", "RUNNING"):
            break
        time.sleep(1.0)
    assert status["status"] == "DONE", json.dumps(status, indent=1) + app.server.log_tail(30)

    model = app.model_dir / "models" / "model.pt"
    assert model.is_file()
    stats = json.loads((app.model_dir / "train_stats.json").read_text())
    assert stats["videos"] == ["vid0", "vid1"] and stats["labelled_frames"]["vid0"] == list(PAINTED)
    assert app.client.info()["train_stats"]["two_shot"]["model"] == str(model)
    datalist = json.loads(Path(stats["datalist"]).read_text())
    assert [e["labelled_frames"] for e in datalist["training"]] == [list(PAINTED), list(PAINTED)]

    after, params = app.infer("vid2", label, reference_frames=[1, 6], probabilities=True)
    assert params["model"]["path"] == str(model) and params["model"]["untrained"] is False
    assert params["model"]["mtime"] == pytest.approx(model.stat().st_mtime, abs=1e-3)
    assert not np.allclose(after, before)  # the new weights are in use
    np.testing.assert_array_equal(after[1], read_mask(label)[1])  # references still reproduced
