"""The video engine with its handlers: scoring, prediction files, protocols, pseudo-labels."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Engine

from stbv_monai.data import load_datalist, read_mask, read_video, write_mask, write_video
from stbv_monai.engines import PseudoLabeller, VideoEvaluator, choose_references, read_manifest
from stbv_monai.engines.workflow import run_engine
from stbv_monai.errors import InputError
from stbv_monai.handlers import PredictionWriter, VideoMetricsHandler, video_metrics
from stbv_monai.inference import CopyReferenceInferer, FolderInferer
from conftest import disc_video


def _oracle(frames, network, references=None, entry=None, **kwargs):
    """An inferer that returns the ground truth (reads the label file)."""
    return torch.from_numpy(read_mask(entry["label"]).astype(np.float32))


def _evaluator(inferer, entries, **kwargs) -> VideoEvaluator:
    return VideoEvaluator(inferer, entries, metrics=video_metrics(), **kwargs)


def test_perfect_predictions_score_one_and_reports_are_written(disc_dataset, tmp_path):
    entries = load_datalist(disc_dataset, "test")
    handler = VideoMetricsHandler(output_dir=tmp_path / "eval")
    metrics = run_engine(_evaluator(_oracle, entries), [handler])
    assert metrics["J"] == pytest.approx(1.0) and metrics["F"] == pytest.approx(1.0)
    assert metrics["HD95"] == pytest.approx(0.0)
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["n_videos"] == 3 and summary["unit"] == "mm"
    assert summary["n_frames"] == 3 * (8 - 2)  # references are left out


def test_copy_baseline_is_worse_than_the_oracle_on_moving_lesions(disc_dataset):
    entries = load_datalist(disc_dataset, "test")
    metrics = run_engine(_evaluator(CopyReferenceInferer(), entries), [VideoMetricsHandler()])
    assert 0.2 < metrics["J"] < 0.95  # the disc moves one pixel a frame: copies drift off it


def test_folder_predictions_scored_like_a_model(disc_dataset, tmp_path):
    entries = load_datalist(disc_dataset, "test")
    for e in entries:  # another tool's output: the ground truth shifted by one frame
        mask = read_mask(e["label"])
        write_mask(tmp_path / "preds" / (e["image"].split("/")[-1]), np.roll(mask, 1, axis=0))
    metrics = run_engine(_evaluator(FolderInferer(tmp_path / "preds"), entries), [VideoMetricsHandler()])
    assert 0.5 < metrics["J"] < 1.0
    with pytest.raises(InputError, match="no prediction for video 'vid0'"):
        run_engine(_evaluator(FolderInferer(tmp_path), entries), [VideoMetricsHandler()])


def test_first_frame_protocol_is_the_lesions_first_appearance():
    label = np.zeros((8, 4, 4), np.uint8)
    label[3:, 1, 1] = 1  # the lesion enters the view at frame 3; frames 1 and 6 are labelled
    first = choose_references([6, 1], "first_frame", label)
    assert (first.frames, first.excluded, first.rule) == ([3], [0, 1, 2], "first_lesion_frame")
    assert choose_references([6, 1], "labelled", label).frames == [1, 6]
    sparse = np.zeros_like(label)
    sparse[[1, 6], 1, 1] = 1  # a label file with only the labelled frames: the first labelled frame, said so
    fallback = choose_references([6, 1], "first_frame", sparse)
    assert (fallback.frames, fallback.excluded, fallback.rule) == ([1], [0], "first_labelled_frame")
    with pytest.raises(InputError, match="unknown protocol"):
        choose_references([1], "davis")


def test_first_frame_protocol_scores_from_the_lesions_first_frame(tmp_path):
    frames, mask = disc_video(10, 32)
    mask[:4] = 0  # the lesion appears at frame 4
    write_video(tmp_path / "v.nii.gz", frames)
    write_mask(tmp_path / "m.nii.gz", mask)
    entry = {"image": str(tmp_path / "v.nii.gz"), "label": str(tmp_path / "m.nii.gz"), "labelled_frames": [2, 8]}
    handler = VideoMetricsHandler(output_dir=tmp_path / "eval")
    run_engine(_evaluator(CopyReferenceInferer(), [entry], protocol="first_frame"), [handler])
    (video,) = handler.results
    assert video.reference_frames == (4,) and video.excluded_frames == (0, 1, 2, 3)
    assert video.reference_rule == "first_lesion_frame" and video.n_frames == 10 - 5
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["reference_rules"] == {"first_lesion_frame": 1}


def test_prediction_writer_keeps_the_format_family_and_writes_an_overlay(disc_dataset, tmp_path):
    entries = load_datalist(disc_dataset, "test")[:1]
    run_engine(VideoEvaluator(_oracle, entries), [PredictionWriter(tmp_path / "out", save_probs=True, overlay="mp4")])
    mask = read_mask(tmp_path / "out" / "masks" / "vid0.nii.gz")
    np.testing.assert_array_equal(mask, read_mask(entries[0]["label"]))
    assert read_video(tmp_path / "out" / "probs" / "vid0.nii.gz").frames.max() == pytest.approx(1.0)
    overlay = read_video(tmp_path / "out" / "overlays" / "vid0.mp4")
    assert overlay.frames.shape == mask.shape


def test_video_metrics_and_the_report_handler_on_a_bare_engine(tmp_path):
    gt = np.zeros((4, 16, 16), np.uint8)
    gt[:, 4:10, 4:10] = 1
    outputs = [{"name": "a", "pred": gt, "gt": gt, "references": [0], "spacing": None},
               {"name": "b", "pred": np.zeros_like(gt), "gt": gt, "references": [0], "spacing": None}]
    engine = Engine(lambda e, batch: dict(batch))
    for name, metric in video_metrics().items():
        metric.attach(engine, name)
    handler = VideoMetricsHandler(output_dir=tmp_path, print_table=False)
    handler.attach(engine)
    engine.run(outputs, max_epochs=1)
    assert engine.state.metrics["J"] == pytest.approx(0.5)  # per-video means, then over videos
    assert engine.state.metrics["HD95"] == pytest.approx(np.hypot(16, 16) / 2)  # a miss costs the diagonal
    assert handler.summary["J"] == engine.state.metrics["J"] and handler.summary["n_videos"] == 2
    assert (tmp_path / "metrics_per_frame.csv").is_file()


def test_pseudo_labeller_keeps_ground_truth_and_resumes(disc_dataset, tmp_path):
    entries = load_datalist(disc_dataset, "training")
    calls = []

    def teacher(frames, network, references=None, **kwargs):
        refs = references  # a known teacher: 0.9 everywhere the nearest reference says lesion
        calls.append(sorted(refs))
        return CopyReferenceInferer()(frames, references=refs) * 0.9

    out = tmp_path / "pseudo"
    labeller = PseudoLabeller(torch.nn.Identity(), entries, out, teacher)
    (out).mkdir()
    labeller.run  # noqa: B018 - run below after a simulated crash
    first = PseudoLabeller(torch.nn.Identity(), entries[:1], out, teacher)
    first.evaluator(first.pending()).run()  # "killed" after the first video
    assert len(calls) == 1
    manifest = labeller.run()
    assert len(calls) == 3  # resumed: the finished video was not labelled again
    videos = read_manifest(manifest)
    assert [v["labelled_frames"] for v in videos] == [[1, 6]] * 3
    for v in videos:
        pseudo, gt = read_mask(v["label"]), read_mask(v["gt_label"])
        np.testing.assert_array_equal(pseudo[[1, 6]], gt[[1, 6]])
        assert v["source"][1] == 1 and v["source"][0] == 2
        assert v["confidence"][0] == pytest.approx(0.9, abs=0.1)
    assert json.loads(manifest.read_text())["summary"]["frames_gt"] == 6


# ----------------------------------------------------------------------------- unique ids (two sites, same file name)


def _copy_teacher(calls):
    def teacher(frames, network, references=None, **kwargs):
        refs = references
        calls.append(sorted(refs))
        return CopyReferenceInferer()(frames, references=refs) * 0.9
    return teacher


def test_pseudo_labels_of_two_sites_with_the_same_file_name_are_kept_apart(tmp_path, caplog):
    """Each video its own mask and record, named by its id; the manifest lists every video once."""
    from conftest import write_two_site_dataset

    entries = load_datalist(write_two_site_dataset(tmp_path), "training")
    out = tmp_path / "pseudo"
    calls = []
    # an earlier run under the old naming: both sites wrote bus_0000.*, the second over the first
    old = PseudoLabeller(torch.nn.Identity(), [{k: v for k, v in e.items() if k != "id"} for e in entries[:3]],
                         out, _copy_teacher(calls))
    old.evaluator(old.pending()).run()
    assert sorted(p.name for p in out.glob("*.json")) == ["bus_0000.json", "bus_0001.json"]
    calls.clear()
    with caplog.at_level(logging.INFO):
        manifest = PseudoLabeller(torch.nn.Identity(), entries, out, _copy_teacher(calls)).run()
    # bus_0001 (one video of that name, its record names it) is read; bus_0000 is ambiguous: redone, and said
    assert calls == [[3], [1, 6], [2, 5]]
    assert "bus_0000.json, written under the old naming, is not used (several videos have that file name)" \
        in caplog.text
    assert "reading" in caplog.text and "bus_0001.json, written under the old naming" in caplog.text
    videos = read_manifest(manifest)
    assert [v["id"] for v in videos] == [e["id"] for e in entries]
    assert len({v["label"] for v in videos}) == 4  # no video's pseudo-labels overwrite another's
    for v, e in zip(videos, entries):
        assert v["image"] == str(Path(e["image"]).resolve()) and v["labelled_frames"] == e["labelled_frames"]
        pseudo, gt = read_mask(v["label"]), read_mask(e["label"])
        np.testing.assert_array_equal(pseudo[e["labelled_frames"]], gt[e["labelled_frames"]])
    assert (out / "bus_0000.json").is_file()  # the old files are left as they were


def test_predictions_reports_and_overlays_are_named_by_id(tmp_path):
    from conftest import write_two_site_dataset

    entries = load_datalist(write_two_site_dataset(tmp_path), "test")
    handler = VideoMetricsHandler(output_dir=tmp_path / "eval", print_table=False)
    run_engine(VideoEvaluator(_oracle, entries), [handler, PredictionWriter(tmp_path / "out", overlay="gif")])
    ids = ["siteA__images__bus_0000", "siteB__images__bus_0000"]
    assert sorted(p.name for p in (tmp_path / "out" / "masks").iterdir()) == [f"{i}.nii.gz" for i in ids]
    assert sorted(p.name for p in (tmp_path / "out" / "overlays").iterdir()) == [f"{i}.gif" for i in ids]
    for vid, entry in zip(ids, entries):
        written = read_mask(tmp_path / "out" / "masks" / f"{vid}.nii.gz")
        np.testing.assert_array_equal(written, read_mask(entry["label"]))
    rows = (tmp_path / "eval" / "metrics_per_video.csv").read_text().splitlines()[1:]
    assert [r.split(",")[0] for r in rows] == ids

    # scoring a folder of predictions finds them by id; one named by file name only is reported, not guessed
    metrics = run_engine(_evaluator(FolderInferer(tmp_path / "out" / "masks"), entries), [VideoMetricsHandler()])
    assert metrics["J"] == pytest.approx(1.0)
    (tmp_path / "old").mkdir()
    write_mask(tmp_path / "old" / "bus_0000.nii.gz", read_mask(entries[1]["label"]))
    with pytest.raises(InputError, match=r"no prediction for video 'siteA__images__bus_0000' .*; bus_0000\.nii\.gz is "
                                         r"named by file name only \(the old naming\)"):
        run_engine(_evaluator(FolderInferer(tmp_path / "old"), entries), [VideoMetricsHandler()])


def test_a_record_of_another_video_under_the_same_id_is_not_reused(disc_dataset, tmp_path, caplog):
    """Resuming after the datalist changed: vid0.json of the old vid0 does not stand in for the new one."""
    import shutil

    out, calls = tmp_path / "pseudo", []
    PseudoLabeller(torch.nn.Identity(), load_datalist(disc_dataset, "training")[:1], out, _copy_teacher(calls)).run()
    shutil.copytree(disc_dataset.parent, tmp_path / "moved")
    (entry,) = load_datalist(tmp_path / "moved" / "datalist.json", "training")[:1]
    with caplog.at_level(logging.WARNING):
        manifest = PseudoLabeller(torch.nn.Identity(), [entry], out, _copy_teacher(calls)).run()
    assert len(calls) == 2 and caplog.text.count("vid0.json records another video") == 1
    assert read_manifest(manifest)[0]["image"] == str(Path(entry["image"]).resolve())
