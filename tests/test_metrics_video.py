"""Per-video evaluation: MONAI agreement, empty-frame rules, protocol, averaging, reports."""

from __future__ import annotations

import csv
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance

from stbv_monai.errors import InputError
from stbv_monai.metrics import evaluate_video, format_table, summarise, write_reports
from stbv_monai.metrics.davis import contour_accuracy_batch, region_similarity_batch
from stbv_monai.metrics.video import _recall_decay, dice_batch, hausdorff_batch

H, W = 40, 56


def _ellipses(rng: np.random.Generator, n: int, shape: tuple[int, int] = (H, W)) -> np.ndarray:
    """``n`` random non-empty ellipses, some crossing the image border."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    out = []
    while len(out) < n:
        cy, cx = rng.uniform(-0.1, 1.1, size=2) * shape
        ry, rx = rng.uniform(0.08, 0.4, size=2) * shape
        m = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        if m.any():
            out.append(m)
    return np.stack(out)


def _monai_hd(pred: np.ndarray, gt: np.ndarray, percentile: float | None, spacing=None) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hd = compute_hausdorff_distance(torch.from_numpy(pred[:, None]), torch.from_numpy(gt[:, None]),
                                        include_background=True, percentile=percentile, spacing=spacing)
    return hd[:, 0].double().numpy()


@pytest.mark.parametrize("spacing", [None, (0.5, 0.5), (0.3, 0.7)])
def test_dice_and_hausdorff_match_monai_on_non_empty_frames(spacing) -> None:
    rng = np.random.default_rng(0)
    pred, gt = _ellipses(rng, 12), _ellipses(rng, 12)
    pred[0] = gt[0]  # identical masks: HD 0
    pred[1] = np.ones((H, W), dtype=bool)  # full frame against an ellipse
    dice = compute_dice(torch.from_numpy(pred[:, None]).float(), torch.from_numpy(gt[:, None]).float(),
                        include_background=True)[:, 0].double().numpy()
    np.testing.assert_allclose(dice_batch(pred, gt), dice, rtol=1e-6)
    hd95, hd_max = hausdorff_batch(pred, gt, spacing or (1.0, 1.0))
    np.testing.assert_allclose(hd95, _monai_hd(pred, gt, 95, spacing), rtol=1e-6)
    np.testing.assert_allclose(hd_max, _monai_hd(pred, gt, None, spacing), rtol=1e-6)
    assert hd95[0] == 0.0 and np.all(hd95[2:] > 0)


def test_empty_frames_follow_the_documented_rule() -> None:
    blob = np.zeros((H, W), dtype=bool)
    blob[10:20, 15:30] = True
    empty = np.zeros_like(blob)
    # frame 0 reference; 1 both empty; 2 missed; 3 false positive; 4 a hit
    gt = np.stack([blob, empty, blob, empty, blob])
    pred = np.stack([blob, empty, empty, blob, blob])
    v = evaluate_video(pred, gt, [0], spacing=(0.2, 0.1), name="empties")
    diagonal = math.hypot(H * 0.2, W * 0.1)
    rows = {fm.frame: fm for fm in v.frames}
    assert (rows[1].j, rows[1].f, rows[1].dice, rows[1].hd95, rows[1].hd_max) == (1, 1, 1, 0, 0)
    for t in (2, 3):
        assert (rows[t].j, rows[t].f, rows[t].dice) == (0, 0, 0)
        assert rows[t].hd95 == pytest.approx(diagonal) and rows[t].hd_max == pytest.approx(diagonal)
    assert (rows[2].gt_empty, rows[2].pred_empty, rows[3].gt_empty, rows[3].pred_empty) == (False, True, True, False)
    assert (v.n_frames, v.n_frames_both_empty, v.n_missed, v.n_false_positive) == (4, 1, 1, 1)
    assert v.unit == "mm"
    assert v.hd95 == pytest.approx(2 * diagonal / 4)  # penalties are averaged, not skipped as NaN
    assert v.dice == pytest.approx(0.5) and v.j == pytest.approx(0.5)


def test_references_and_excluded_frames_are_scored_but_not_averaged() -> None:
    rng = np.random.default_rng(1)
    gt = _ellipses(rng, 6)
    pred = _ellipses(rng, 6)
    pred[[1, 4]] = gt[[1, 4]]  # references are perfect: including them would inflate J
    v = evaluate_video(pred, gt, labelled_frames=[4, 1], exclude=[5, 1])
    assert v.reference_frames == (1, 4) and v.excluded_frames == (5,)
    assert [fm.status for fm in v.frames] == ["evaluated", "reference", "evaluated", "evaluated", "reference",
                                              "excluded"]
    used = [0, 2, 3]
    j, f = region_similarity_batch(pred, gt), contour_accuracy_batch(pred, gt)
    assert v.n_frames == 3
    assert v.j == pytest.approx(j[used].mean()) and v.f == pytest.approx(f[used].mean())
    assert v.jf == pytest.approx((j[used].mean() + f[used].mean()) / 2)
    assert v.j < j.mean()  # the perfect reference frames really were left out


def test_averages_per_video_then_over_videos() -> None:
    blob = np.zeros((1, H, W), dtype=bool)
    blob[:, 5:15, 5:25] = True
    long_good = evaluate_video(np.repeat(blob, 10, 0), np.repeat(blob, 10, 0), [0], name="long")
    short_bad = evaluate_video(np.zeros((3, H, W), dtype=bool), np.repeat(blob, 3, 0), [0], name="short")
    s = summarise([long_good, short_bad])
    assert (long_good.j, short_bad.j) == (1.0, 0.0)
    assert s["J"] == pytest.approx(0.5)  # pooling frames would give 9 / 11
    assert s["J&F"] == pytest.approx((long_good.jf + short_bad.jf) / 2)
    assert s["J&F"] == pytest.approx((s["J"] + s["F"]) / 2)
    assert (s["n_videos"], s["n_frames"], s["n_missed"], s["unit"]) == (2, 11, 2, "px")


def test_isotropic_spacing_scales_hausdorff_only() -> None:
    rng = np.random.default_rng(2)
    pred, gt = _ellipses(rng, 5), _ellipses(rng, 5)
    pred[3] = False  # a missed frame: its penalty scales too
    px = evaluate_video(pred, gt, [0])
    mm = evaluate_video(torch.from_numpy(pred), torch.from_numpy(gt), [0], spacing=2.5)
    assert (px.unit, mm.unit) == ("px", "mm")
    assert mm.hd95 == pytest.approx(2.5 * px.hd95, rel=1e-6)
    assert mm.hd_max == pytest.approx(2.5 * px.hd_max, rel=1e-6)
    assert (mm.j, mm.f, mm.dice) == (px.j, px.f, px.dice)


def test_recall_and_decay_follow_davis_binning() -> None:
    # 8 frames: bins by DAVIS's edges are frames 0-2, 2-4, 4-5 and 5-7.
    recall, decay = _recall_decay(np.array([1, 1, 1, 0.5, 0.5, 0, 0, 0.3]))
    assert recall == pytest.approx(3 / 8)
    assert decay == pytest.approx(1 - 0.1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"labelled_frames": [7]},  # out of range
        {"labelled_frames": [1.0]},  # not an integer
        {"labelled_frames": [0], "exclude": [1, 2]},  # nothing left to evaluate
        {"labelled_frames": [0], "spacing": (0.5, -1)},
        {"labelled_frames": [0], "spacing": (0.5, 0.5, 0.5)},
    ],
)
def test_bad_arguments_raise_input_error(kwargs: dict) -> None:
    masks = np.zeros((3, 8, 8), dtype=bool)
    with pytest.raises(InputError):
        evaluate_video(masks, masks, **kwargs)


def test_bad_masks_and_mixed_units_raise_input_error() -> None:
    masks = np.zeros((3, 8, 8), dtype=bool)
    with pytest.raises(InputError, match="clip pred"):
        evaluate_video(np.full((3, 8, 8), 0.7), masks, [0], name="clip")
    with pytest.raises(InputError):
        evaluate_video(masks[:2], masks, [0])
    with pytest.raises(InputError):
        summarise([])


def test_mixed_units_leave_hausdorff_out_of_the_summary(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    pred, gt = _ellipses(rng, 4), _ellipses(rng, 4)
    videos = [evaluate_video(pred, gt, [0], name="px"), evaluate_video(pred, gt, [0], spacing=0.1, name="mm")]
    s = summarise(videos)
    assert s["unit"] == "mixed" and math.isnan(s["HD95"]) and math.isnan(s["HD_max"])
    assert s["J"] == pytest.approx(videos[0].j) and s["Dice"] == pytest.approx(videos[0].dice)
    paths = write_reports(videos, tmp_path)
    assert json.loads(paths["summary"].read_text())["HD95"] is None
    with pytest.raises(InputError):
        write_reports(videos, tmp_path, unit="mm")


def test_write_reports(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    videos = [evaluate_video(_ellipses(rng, n), _ellipses(rng, n), [0, n - 1], spacing=0.1, name=f"v{n}")
              for n in (4, 7)]
    paths = write_reports(videos, tmp_path / "eval", unit="mm")
    assert sorted(p.name for p in (tmp_path / "eval").iterdir()) == sorted(p.name for p in paths.values())
    with open(paths["per_frame"], newline="") as fh:
        frame_rows = list(csv.DictReader(fh))
    assert len(frame_rows) == 11 and sum(r["status"] == "reference" for r in frame_rows) == 4
    with open(paths["per_video"], newline="") as fh:
        video_rows = list(csv.DictReader(fh))
    assert [r["name"] for r in video_rows] == ["v4", "v7"] and video_rows[1]["reference_frames"] == "0 6"
    assert float(video_rows[0]["jf"]) == pytest.approx(videos[0].jf)
    summary = json.loads(paths["summary"].read_text())
    assert summary == pytest.approx(summarise(videos))
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = format_table(summary)
    assert "HD95 (mm)" in table and "2 videos" in table
    with pytest.raises(InputError):
        write_reports(videos, tmp_path / "other", unit="px")
