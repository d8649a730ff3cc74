"""DAVIS J and F: hand-derived cases, the official code's numbers, batching, bad input."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from stbv_monai.errors import InputError
from stbv_monai.metrics.davis import (
    boundary_map,
    boundary_precision_recall_batch,
    boundary_radius,
    contour_accuracy,
    contour_accuracy_batch,
    region_similarity,
    region_similarity_batch,
)

FIXTURE = Path(__file__).parent / "fixtures" / "davis_reference.npz"


def _mask(shape: tuple[int, int], *cells: tuple[object, object]) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    for index in cells:
        m[index] = True
    return m


def _pr(pred: np.ndarray, gt: np.ndarray, bound_th: float = 0.008) -> tuple[float, float]:
    p, r = boundary_precision_recall_batch(pred[None], gt[None], bound_th)
    return float(p[0]), float(r[0])


# Case A, 5x5: gt is the 3x3 square rows 1-3, cols 1-3; pred the same square moved one
# column right (rows 1-3, cols 2-4), touching the right border.
#   J = |cols 2-3| / (9 + 9 - 6) = 6 / 12 = 0.5.
#   gt boundary (a pixel differing from its E, S or SE neighbour): the ring of the 4x4
#   box rows 0-3, cols 0-3 -> 12 pixels.
#   pred boundary: row 0 cols 1-4 (col 4 by the last-column rule, differs from south),
#   (1,1), (2,1), row 3 cols 1-4; the pixels (1,4), (2,4) on the last column equal their
#   south neighbour, so no boundary there -> 10 pixels.
#   bound_th 0.008: bound_pix = ceil(0.008 * sqrt(50)) = 1 (a plus-shaped disk); every
#   pred boundary pixel has a gt boundary pixel within 1 and vice versa: P = R = F = 1.
#   bound_th 0 (exact match): common pixels (0,1..3), (3,1..3) = 6:
#   P = 6/10, R = 6/12, F = 2 * 0.6 * 0.5 / 1.1 = 6/11.
SQUARE_GT = _mask((5, 5), np.s_[1:4, 1:4])
SQUARE_PRED = _mask((5, 5), np.s_[1:4, 2:5])


def test_square_shift_by_hand() -> None:
    assert region_similarity(SQUARE_PRED, SQUARE_GT) == pytest.approx(0.5, abs=1e-12)
    ring = _mask((5, 5), np.s_[0, 0:4], np.s_[3, 0:4], np.s_[0:4, 0], np.s_[0:4, 3])
    np.testing.assert_array_equal(boundary_map(SQUARE_GT), ring)
    assert boundary_map(SQUARE_PRED).sum() == 10
    assert _pr(SQUARE_PRED, SQUARE_GT) == pytest.approx((1.0, 1.0))
    assert contour_accuracy(SQUARE_PRED, SQUARE_GT) == pytest.approx(1.0)
    assert _pr(SQUARE_PRED, SQUARE_GT, bound_th=0) == pytest.approx((0.6, 0.5))
    assert contour_accuracy(SQUARE_PRED, SQUARE_GT, bound_th=0) == pytest.approx(6 / 11, abs=1e-12)


# Case B, 6x7 (non-square): gt is the single pixel (2, 3); pred the full-width line row 4.
#   J = 0 / (1 + 7) = 0.
#   bound_pix = ceil(0.008 * sqrt(36 + 49)) = 1.
#   gt boundary: (2,3) and the three pixels having it as E, S or SE neighbour:
#   (2,2), (1,3), (1,2) -> 4 pixels.
#   pred boundary: row 3 (its south neighbour is set; (3,6) by the last-column rule) and
#   row 4 (south is clear; (4,6) likewise) -> 14 pixels; row 5, the last row, compares
#   east only -> none.
#   P: only (3,2) and (3,3) touch gt boundary pixels (2,2), (2,3) -> 2/14 = 1/7.
#   R: (2,2) and (2,3) are within 1 of row 3, (1,2) and (1,3) are not -> 2/4 = 1/2.
#   F = 2 * (1/7) * (1/2) / (1/7 + 1/2) = 2/9.
def test_pixel_versus_line_by_hand() -> None:
    gt = _mask((6, 7), (2, 3))
    pred = _mask((6, 7), np.s_[4, :])
    assert region_similarity(pred, gt) == 0.0
    assert boundary_map(gt).sum() == 4 and boundary_map(pred).sum() == 14
    assert _pr(pred, gt) == pytest.approx((1 / 7, 1 / 2), abs=1e-12)
    assert contour_accuracy(pred, gt) == pytest.approx(2 / 9, abs=1e-12)


# Case C, 5x5: the bottom-right corner pixel has no boundary of its own (the corner is
# always cleared); its boundary is (4,3) (last row, differs east), (3,4) (last column,
# differs south) and (3,3) (differs south-east). The top-left pixel's boundary is just
# itself. Corner vs corner: J = 0; the boundaries are more than 1 apart: P = R = 0, F = 0.
def test_corner_pixels_by_hand() -> None:
    br, tl = _mask((5, 5), (4, 4)), _mask((5, 5), (0, 0))
    np.testing.assert_array_equal(boundary_map(br), _mask((5, 5), (4, 3), (3, 4), (3, 3)))
    np.testing.assert_array_equal(boundary_map(tl), tl)
    assert region_similarity(br, br) == 1.0 and contour_accuracy(br, br) == 1.0
    assert region_similarity(br, tl) == 0.0
    assert _pr(br, tl) == (0.0, 0.0)
    assert contour_accuracy(br, tl) == 0.0


# Case D, empty and full masks (5x5 and 6x7). A full mask has no boundary under the
# seg2bmap rule (the last row/column compare inside the image only).
#   empty vs empty: J = 1 (empty union), no boundaries: P = R = 1, F = 1.
#   empty pred vs square gt (missed): J = 0, P = 1, R = 0, F = 0.
#   square pred vs empty gt (false positive): J = 0, P = 0, R = 1, F = 0.
#   full vs full: J = 1, no boundaries: F = 1; full vs empty: J = 0 but F = 1.
@pytest.mark.parametrize("shape", [(5, 5), (6, 7)])
def test_empty_and_full_by_hand(shape: tuple[int, int]) -> None:
    empty, full = np.zeros(shape, dtype=bool), np.ones(shape, dtype=bool)
    square = _mask(shape, np.s_[1:4, 1:4])
    assert boundary_map(full).sum() == 0
    assert (region_similarity(empty, empty), contour_accuracy(empty, empty)) == (1.0, 1.0)
    assert (region_similarity(empty, square), _pr(empty, square), contour_accuracy(empty, square)) == (0, (1, 0), 0)
    assert (region_similarity(square, empty), _pr(square, empty), contour_accuracy(square, empty)) == (0, (0, 1), 0)
    assert (region_similarity(full, full), contour_accuracy(full, full)) == (1.0, 1.0)
    assert (region_similarity(full, empty), contour_accuracy(full, empty)) == (0.0, 1.0)


def _fixture_cases() -> list[tuple[str, np.ndarray, np.ndarray, float, float, float]]:
    data = np.load(FIXTURE)
    return [
        (str(name), data[f"pred_{i:04d}"], data[f"gt_{i:04d}"], float(th), float(j), float(f))
        for i, (name, th, j, f) in enumerate(zip(data["names"], data["bound_th"], data["j"], data["f"]))
    ]


def test_fixture_is_what_it_claims() -> None:
    data = np.load(FIXTURE)
    assert "db_eval_iou" in str(data["note"]) and "f_measure" in str(data["note"])
    assert len(data["names"]) > 500 and len(set(data["bound_th"].tolist())) > 3


def test_single_frame_matches_official_davis() -> None:
    for name, pred, gt, th, j_ref, f_ref in _fixture_cases():
        assert region_similarity(pred, gt) == pytest.approx(j_ref, abs=1e-6), name
        assert contour_accuracy(pred, gt, bound_th=th) == pytest.approx(f_ref, abs=1e-6), name


def test_batch_matches_official_davis() -> None:
    groups = defaultdict(list)
    for case in _fixture_cases():
        groups[(case[1].shape, case[3])].append(case)
    for (_, th), cases in groups.items():
        pred = np.stack([c[1] for c in cases])
        gt = np.stack([c[2] for c in cases])
        np.testing.assert_allclose(region_similarity_batch(pred, gt), [c[4] for c in cases], atol=1e-6)
        np.testing.assert_allclose(contour_accuracy_batch(pred, gt, th), [c[5] for c in cases], atol=1e-6)


def _dilation_pr(pred: np.ndarray, gt: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """P and R by dilating each boundary with a disk, as the reference does (frames non-empty)."""
    offsets = np.arange(-radius, radius + 1)
    disk = (offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2)[None]
    pb, gb = boundary_map(pred), boundary_map(gt)
    p_hit = (pb & ndimage.binary_dilation(gb, structure=disk)).sum(axis=(1, 2))
    g_hit = (gb & ndimage.binary_dilation(pb, structure=disk)).sum(axis=(1, 2))
    return p_hit / pb.sum(axis=(1, 2)), g_hit / gb.sum(axis=(1, 2))


@pytest.mark.parametrize("radius", [0, 1, 2, 4, 7, 12])
def test_neighbour_query_equals_disk_dilation(radius: int) -> None:
    rng = np.random.default_rng(radius)
    yy, xx = np.mgrid[:48, :70]
    blobs = [(yy - rng.uniform(0, 48)) ** 2 + (xx - rng.uniform(0, 70)) ** 2 < rng.uniform(20, 400) for _ in range(16)]
    pred = np.stack(blobs[:8]) ^ (rng.random((8, 48, 70)) < 0.02)
    gt = np.stack(blobs[8:])
    p, r = boundary_precision_recall_batch(pred, gt, bound_th=radius if radius else 0.0)
    p_ref, r_ref = _dilation_pr(pred, gt, radius)
    np.testing.assert_allclose(p, p_ref, atol=1e-12)
    np.testing.assert_allclose(r, r_ref, atol=1e-12)
    assert 0 < p.mean() < 1  # the case is not trivially all-matched or none-matched


def test_frames_of_a_batch_do_not_interact() -> None:
    gt = np.zeros((3, 20, 20), dtype=bool)
    gt[0, 5:10, 5:10] = True
    pred = np.zeros_like(gt)
    pred[1, 5:10, 5:10] = True  # the same square, one frame later
    np.testing.assert_array_equal(contour_accuracy_batch(pred, gt, bound_th=5), [0.0, 0.0, 1.0])


def test_boundary_radius() -> None:
    assert boundary_radius(5, 5) == 1
    assert boundary_radius(128, 128) == 2  # ceil(1.448)
    assert boundary_radius(480, 854) == 8  # DAVIS 480p: ceil(7.84)
    assert boundary_radius(600, 800, bound_th=3) == 3
    assert boundary_radius(600, 800, bound_th=0) == 0


@pytest.mark.parametrize(
    "pred, gt, kwargs",
    [
        (np.full((4, 4), 0.5), np.zeros((4, 4)), {}),  # probabilities, not a mask
        (np.full((4, 4), 255, dtype=np.uint8), np.zeros((4, 4)), {}),  # 0/255 PNG values
        (np.zeros((4, 4)), np.zeros((4, 5)), {}),  # shapes differ
        (np.zeros((1, 4, 4)), np.zeros((1, 4, 4)), {}),  # (T, H, W) given to the one-frame function
        (np.zeros((0, 4)), np.zeros((0, 4)), {}),  # empty axis
        (np.zeros((4, 4)), np.zeros((4, 4)), {"bound_th": -0.1}),
        (np.zeros((4, 4)), np.zeros((4, 4)), {"bound_th": 1.5}),  # fractional pixel radius
    ],
)
def test_bad_input_raises_input_error(pred: np.ndarray, gt: np.ndarray, kwargs: dict) -> None:
    with pytest.raises(InputError):
        contour_accuracy(pred, gt, **kwargs)


def test_torch_and_integer_inputs_agree_with_numpy_bool() -> None:
    rng = np.random.default_rng(3)
    pred, gt = rng.random((4, 30, 41)) < 0.4, rng.random((4, 30, 41)) < 0.4
    expected = contour_accuracy_batch(pred, gt)
    np.testing.assert_array_equal(contour_accuracy_batch(torch.from_numpy(pred), torch.from_numpy(gt)), expected)
    np.testing.assert_array_equal(contour_accuracy_batch(pred.astype(np.uint8), gt.astype(np.float32)), expected)
    assert region_similarity(torch.from_numpy(pred[0]).float(), gt[0]) == region_similarity(pred[0], gt[0])
