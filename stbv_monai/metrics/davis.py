"""DAVIS region similarity J and contour accuracy F for binary masks.

The numbers agree with the DAVIS 2017 evaluation (``davis2017/metrics.py``:
``db_eval_iou`` and ``f_measure``) so that ST-BV results can be compared with published
video-object-segmentation tables:

* J is the Jaccard index ``|S ∩ G| / |S ∪ G|``, 1 when both masks are empty.
* F is the F-measure of boundary precision and recall. A boundary pixel is a pixel that
  differs from its east, south or south-east neighbour (Martin's ``seg2bmap``); on the
  last row only the east neighbour counts, on the last column only the south one, and the
  bottom-right pixel is never a boundary (so a mask filling the whole image has no
  boundary). A predicted boundary pixel is matched when a ground-truth boundary pixel
  lies within ``bound_pix`` of it, i.e. inside a disk ``x² + y² <= bound_pix²``; recall is
  the same the other way round. ``bound_pix = ceil(bound_th * ||(H, W)||)`` for
  ``bound_th < 1`` and ``bound_th`` itself (a whole number of pixels) otherwise.
  Corner cases: no predicted boundary but a ground-truth one gives P = 1, R = 0; the
  reverse P = 0, R = 1; neither gives P = R = 1. F = 2PR / (P + R), 0 when P + R = 0.

The reference dilates each boundary map with OpenCV by scikit-image's disk and
intersects. Here the same count, boundary pixels with a pixel of the other boundary in
the disk ``x² + y² <= bound_pix²``, comes from one nearest-neighbour query over the
boundary pixels of a whole ``(T, H, W)`` stack, which keeps evaluating thousands of
frames to seconds at any frame size. ``tests/fixtures/davis_reference.npz`` holds values
computed by the official code that the tests compare against, and the tests check the
query against scipy's binary dilation with the disk footprint.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from stbv_monai.errors import InputError

__all__ = [
    "DEFAULT_BOUND_TH",
    "as_binary_masks",
    "boundary_map",
    "boundary_radius",
    "region_similarity",
    "region_similarity_batch",
    "boundary_precision_recall_batch",
    "contour_accuracy",
    "contour_accuracy_batch",
]

DEFAULT_BOUND_TH = 0.008


def as_binary_masks(mask: Any, source: str, ndim: int) -> np.ndarray:
    """Return ``mask`` as a numpy bool array after checking its rank and values.

    Args:
        mask: numpy array or torch tensor (any device) holding bool or 0/1 values.
        source: name used in error messages (``"pred"``, ``"gt"``, a file name).
        ndim: required rank: 2 for ``(H, W)``, 3 for ``(T, H, W)``.

    Raises:
        InputError: wrong rank, an empty axis, or values other than 0 and 1 (a
            probability map must be thresholded first, silently treating every
            non-zero value as foreground would hide that mistake).
    """
    if hasattr(mask, "detach"):  # torch tensor, possibly on an accelerator
        mask = mask.detach().cpu().numpy()
    arr = np.asarray(mask)
    layout = "(H, W)" if ndim == 2 else "(T, H, W)"
    if arr.ndim != ndim:
        raise InputError(source, f"expected a {layout} mask, got shape {tuple(arr.shape)}")
    if 0 in arr.shape:
        raise InputError(source, f"mask has an empty axis: shape {tuple(arr.shape)}")
    if arr.dtype == bool:
        return arr
    if not np.issubdtype(arr.dtype, np.number) or not np.all((arr == 0) | (arr == 1)):
        raise InputError(source, "mask values must be 0/1 or bool; threshold probabilities first")
    return arr.astype(bool)


def _mask_pair(pred: Any, gt: Any, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    """Check and convert a prediction / ground-truth pair of the same shape."""
    p = as_binary_masks(pred, "pred", ndim)
    g = as_binary_masks(gt, "gt", ndim)
    if p.shape != g.shape:
        raise InputError("pred", f"shape {tuple(p.shape)} differs from the ground truth's {tuple(g.shape)}")
    return p, g


def boundary_map(masks: np.ndarray) -> np.ndarray:
    """One-pixel-wide boundaries of bool masks ``(..., H, W)`` by the ``seg2bmap`` rule.

    Why this rule and not a morphological gradient: it is the one DAVIS uses, and F is
    only comparable with published numbers when the boundary pixels are the same.
    """
    east = np.zeros_like(masks)
    south = np.zeros_like(masks)
    south_east = np.zeros_like(masks)
    east[..., :, :-1] = masks[..., :, 1:]
    south[..., :-1, :] = masks[..., 1:, :]
    south_east[..., :-1, :-1] = masks[..., 1:, 1:]
    bmap = (masks ^ east) | (masks ^ south) | (masks ^ south_east)
    # The image border: the last row compares east only, the last column south only,
    # and the corner is cleared; written in this order, as the reference does.
    bmap[..., -1, :] = masks[..., -1, :] ^ east[..., -1, :]
    bmap[..., :, -1] = masks[..., :, -1] ^ south[..., :, -1]
    bmap[..., -1, -1] = False
    return bmap


def boundary_radius(height: int, width: int, bound_th: float = DEFAULT_BOUND_TH) -> int:
    """Matching tolerance in pixels: a fraction of the image diagonal, or a pixel count.

    Raises:
        InputError: ``bound_th`` negative, or ``>= 1`` but not a whole number (the
            reference's disk of a fractional radius is off-centre).
    """
    if not math.isfinite(bound_th) or bound_th < 0:
        raise InputError("bound_th", f"must be a non-negative number, got {bound_th!r}")
    if bound_th >= 1:
        if bound_th != int(bound_th):
            raise InputError("bound_th", f"a tolerance >= 1 is a pixel radius and must be whole, got {bound_th}")
        return int(bound_th)
    return int(np.ceil(bound_th * np.linalg.norm([height, width])))


def _matched_per_frame(src: np.ndarray, dst: np.ndarray, radius: int) -> np.ndarray:
    """Per frame, how many set pixels of ``src`` have a set pixel of ``dst`` within ``radius``.

    This is ``|src & dilate(dst, disk(radius))|`` of the reference, where the disk is
    ``x² + y² <= radius²``; a nearest-neighbour query on the (sparse) boundary pixels
    answers it without dilating whole frames, which on 600 x 800 ultrasound frames is
    two orders of magnitude faster. All frames share one k-d tree: time is scaled by
    ``radius + 1`` so that pixels of different frames are always too far apart to match.
    Coordinates are integers, so the distances compared with the whole-pixel radius
    are exact.
    """
    counts = np.zeros(src.shape[0], dtype=np.int64)
    src_pts, dst_pts = np.argwhere(src), np.argwhere(dst)
    if len(src_pts) == 0 or len(dst_pts) == 0:
        return counts
    scale = np.array([radius + 1, 1, 1])
    tree = cKDTree(dst_pts * scale)
    dist, _ = tree.query(src_pts * scale, k=1, distance_upper_bound=radius + 0.5)
    hit = dist <= radius
    counts += np.bincount(src_pts[hit, 0], minlength=src.shape[0])
    return counts


def region_similarity_batch(pred: Any, gt: Any) -> np.ndarray:
    """Per-frame J of ``(T, H, W)`` binary masks; shape ``(T,)`` float64."""
    p, g = _mask_pair(pred, gt, 3)
    inter = np.count_nonzero(p & g, axis=(1, 2))
    union = np.count_nonzero(p | g, axis=(1, 2))
    j = np.ones(p.shape[0], dtype=np.float64)
    np.divide(inter, union, out=j, where=union > 0)
    return j


def region_similarity(pred: Any, gt: Any) -> float:
    """J of one frame's ``(H, W)`` binary masks; 1.0 when both are empty."""
    p, g = _mask_pair(pred, gt, 2)
    return float(region_similarity_batch(p[None], g[None])[0])


def boundary_precision_recall_batch(
    pred: Any, gt: Any, bound_th: float = DEFAULT_BOUND_TH
) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame boundary precision and recall of ``(T, H, W)`` masks, with DAVIS's corner cases.

    Returns:
        ``(precision, recall)``, each ``(T,)`` float64.
    """
    p, g = _mask_pair(pred, gt, 3)
    radius = boundary_radius(p.shape[1], p.shape[2], bound_th)
    p_b, g_b = boundary_map(p), boundary_map(g)
    n_p = np.count_nonzero(p_b, axis=(1, 2))
    n_g = np.count_nonzero(g_b, axis=(1, 2))
    p_hit = _matched_per_frame(p_b, g_b, radius)
    g_hit = _matched_per_frame(g_b, p_b, radius)
    # No boundary on one side: precision is vacuous (1) without predicted boundary,
    # recall vacuous (1) without ground-truth boundary; the other side is 0 unless
    # both are missing.
    precision = np.where(n_p > 0, p_hit / np.maximum(n_p, 1), 1.0)
    recall = np.where(n_g > 0, g_hit / np.maximum(n_g, 1), 1.0)
    precision[(n_p > 0) & (n_g == 0)] = 0.0
    recall[(n_p == 0) & (n_g > 0)] = 0.0
    return precision, recall


def contour_accuracy_batch(pred: Any, gt: Any, bound_th: float = DEFAULT_BOUND_TH) -> np.ndarray:
    """Per-frame F of ``(T, H, W)`` binary masks; shape ``(T,)`` float64."""
    precision, recall = boundary_precision_recall_batch(pred, gt, bound_th)
    total = precision + recall
    f = np.zeros_like(total)
    np.divide(2 * precision * recall, total, out=f, where=total > 0)
    return f


def contour_accuracy(pred: Any, gt: Any, bound_th: float = DEFAULT_BOUND_TH) -> float:
    """F of one frame's ``(H, W)`` binary masks (boundary F-measure, DAVIS rules)."""
    p, g = _mask_pair(pred, gt, 2)
    return float(contour_accuracy_batch(p[None], g[None], bound_th)[0])
