"""Evaluate one predicted mask video against its ground truth, and average over videos.

Per frame: DAVIS J and F (:mod:`stbv_monai.metrics.davis`), their mean J&F, MONAI's
Dice and MONAI's symmetric Hausdorff distance (95th percentile and maximum, Euclidean,
in millimetres when the pixel spacing is known, in pixels otherwise).

Empty frames. MONAI's Hausdorff distance is NaN when either mask is empty and the mean
reductions skip NaN, so a missed lesion or a lesion predicted on a lesion-free frame
would silently vanish from the average. Here every frame counts:

====================================  =====  =====  ====  ===================
case                                  J      F      Dice  HD95 and max HD
====================================  =====  =====  ====  ===================
both empty                            1      1      1     0
missed (gt non-empty, pred empty)     0      0      0     image diagonal
false positive (gt empty, pred not)   0      0*     0     image diagonal
====================================  =====  =====  ====  ===================

J and F follow DAVIS unchanged (*F is 1 in the odd case of a prediction filling the
whole frame, which has no boundary under DAVIS's rule). Dice is MONAI's with
``ignore_empty=False``, which already gives 1 and 0. The Hausdorff penalty is the image
diagonal ``||(H * row_spacing, W * column_spacing)||``, larger than any distance two
pixels of the frame can have, so a miss always scores worse than any detection. Such
frames are also counted (``n_frames_both_empty``, ``n_missed``, ``n_false_positive``).

Protocol. The frames given as references at test time (the labelled frames) are
scored but left out of every average, as are the frames in ``exclude`` (for instance
frames without annotation). Unlike DAVIS, the first and last frames are not dropped:
with two references anywhere in the video they are ordinary frames; pass them in
``exclude`` to reproduce DAVIS's protocol exactly. Averages are taken per video first,
then over videos (:func:`summarise`), as DAVIS does, so that long videos do not
outweigh short ones.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from monai.metrics import compute_dice
from monai.metrics.utils import get_mask_edges, get_surface_distance

from stbv_monai.errors import InputError
from stbv_monai.metrics.davis import (
    DEFAULT_BOUND_TH,
    as_binary_masks,
    contour_accuracy_batch,
    region_similarity_batch,
)

__all__ = [
    "FrameMetrics",
    "VideoMetrics",
    "dice_batch",
    "hausdorff_batch",
    "empty_frame_distance",
    "evaluate_video",
    "summarise",
    "SUMMARY_KEYS",
]

logger = logging.getLogger(__name__)

HD_PERCENTILE = 95.0
SUMMARY_KEYS = ("J", "F", "J&F", "Dice", "HD95", "HD_max", "J_recall", "F_recall", "J_decay", "F_decay")


@dataclass(frozen=True)
class FrameMetrics:
    """Scores of one frame; ``status`` is ``evaluated``, ``reference`` or ``excluded``."""

    video: str
    frame: int
    status: str
    j: float
    f: float
    jf: float
    dice: float
    hd95: float
    hd_max: float
    gt_empty: bool
    pred_empty: bool

    def as_row(self) -> dict[str, Any]:
        """A flat dict for one CSV row."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class VideoMetrics:
    """Per-video means over the evaluated frames, the per-frame scores and the counts.

    ``j_recall``/``f_recall`` are the fractions of evaluated frames scoring above 0.5 and
    ``j_decay``/``f_decay`` the mean of the first quarter of them minus that of the last
    quarter (DAVIS's statistics). Hausdorff distances are in ``unit`` (``mm`` or ``px``).
    """

    name: str
    unit: str
    j: float
    f: float
    jf: float
    dice: float
    hd95: float
    hd_max: float
    j_recall: float
    f_recall: float
    j_decay: float
    f_decay: float
    n_frames: int
    n_frames_both_empty: int
    n_missed: int
    n_false_positive: int
    reference_frames: tuple[int, ...]
    excluded_frames: tuple[int, ...]
    frames: tuple[FrameMetrics, ...] = dataclasses.field(repr=False)
    reference_rule: str = ""

    def as_row(self) -> dict[str, Any]:
        """A flat dict for one CSV row (no per-frame scores; frame lists space-separated)."""
        row = {k.name: getattr(self, k.name) for k in dataclasses.fields(self) if k.name != "frames"}
        row["reference_frames"] = " ".join(str(t) for t in self.reference_frames)
        row["excluded_frames"] = " ".join(str(t) for t in self.excluded_frames)
        return row


def _as_tensor(masks: np.ndarray) -> torch.Tensor:
    """``(T, H, W)`` bool to the ``(T, 1, H, W)`` float layout MONAI's metrics take."""
    return torch.from_numpy(masks[:, None].astype(np.float32))


def _crop_to_foreground(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Crop a ``(T, H, W)`` pair to the box holding every foreground pixel of both stacks.

    Dice and the Hausdorff distances do not change when pixels that are background in
    both masks are dropped (MONAI crops each frame likewise before its edge detection),
    but MONAI's per-frame loops run much faster on the small box of a lesion.
    """
    union = (pred | gt).any(axis=0)
    if not union.any():
        return pred[:, :1, :1], gt[:, :1, :1]
    rows, cols = np.flatnonzero(union.any(axis=1)), np.flatnonzero(union.any(axis=0))
    box = (slice(None), slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    return pred[box], gt[box]


def dice_batch(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-frame Dice of ``(T, H, W)`` bool masks by MONAI: 1 when both empty, 0 when one is."""
    pred, gt = _crop_to_foreground(pred, gt)
    dice = compute_dice(_as_tensor(pred), _as_tensor(gt), include_background=True, ignore_empty=False)
    return dice[:, 0].double().numpy()


def _spacing(spacing: float | Sequence[float] | None) -> tuple[tuple[float, float], str]:
    """Normalise the pixel spacing to ``(row, column)`` and name the distance unit."""
    if spacing is None:
        return (1.0, 1.0), "px"
    try:
        values = [float(s) for s in np.ravel(spacing)] * (2 if np.ndim(spacing) == 0 else 1)
    except (TypeError, ValueError):
        values = []
    if len(values) != 2 or not all(math.isfinite(s) and s > 0 for s in values):
        raise InputError("spacing", f"expected a positive (row, column) pixel spacing in mm, got {spacing!r}")
    return (values[0], values[1]), "mm"


def empty_frame_distance(height: int, width: int, spacing: tuple[float, float] = (1.0, 1.0)) -> float:
    """The Hausdorff penalty of a missed or false-positive frame: the image diagonal."""
    return float(math.hypot(height * spacing[0], width * spacing[1]))


def _frame_hausdorff(pred: np.ndarray, gt: np.ndarray, spacing: tuple[float, float]) -> tuple[float, float]:
    """MONAI's symmetric HD95 and max HD of one frame with two non-empty masks.

    Both come from one pass: MONAI's edges (``get_mask_edges``, binary erosion XOR mask)
    and surface distances each way (``get_surface_distance``); the per-direction 95th
    percentile (``torch.quantile``, as ``compute_hausdorff_distance`` takes it) and
    maximum, then the larger direction. MONAI's own cropping to the masks' bounding box is
    skipped: it moves both edge sets alike and does not change a distance.
    """
    edges_pred, edges_gt = get_mask_edges(pred, gt, crop=False)
    directions = [
        torch.from_numpy(np.asarray(get_surface_distance(a, b, "euclidean", spacing), dtype=np.float32))
        for a, b in ((edges_pred, edges_gt), (edges_gt, edges_pred))
    ]
    hd95 = max(float(torch.quantile(d, HD_PERCENTILE / 100)) for d in directions)
    hd_max = max(float(d.max()) for d in directions)
    return hd95, hd_max


def hausdorff_batch(
    pred: np.ndarray, gt: np.ndarray, spacing: tuple[float, float] = (1.0, 1.0)
) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame HD95 and max HD of ``(T, H, W)`` bool masks, with the empty-frame rule.

    Returns:
        ``(hd95, hd_max)``, each ``(T,)`` float64, in the unit of ``spacing``.
    """
    penalty = empty_frame_distance(pred.shape[1], pred.shape[2], spacing)
    pred, gt = _crop_to_foreground(pred, gt)
    pred_any, gt_any = pred.any(axis=(1, 2)), gt.any(axis=(1, 2))
    hd95 = np.where(pred_any == gt_any, 0.0, penalty)
    hd_max = hd95.copy()
    for t in np.flatnonzero(pred_any & gt_any):
        hd95[t], hd_max[t] = _frame_hausdorff(pred[t], gt[t], spacing)
    return hd95, hd_max


def _frame_set(frames: Iterable[Any] | None, n_frames: int, what: str) -> set[int]:
    """Check frame indices lie in ``[0, n_frames)`` and return them as a set."""
    values = list(frames) if frames is not None else []
    bad = [t for t in values if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 0 <= t < n_frames]
    if bad:
        raise InputError(what, f"frame indices must be integers in [0, {n_frames - 1}], got {bad}")
    return {int(t) for t in values}


def _recall_decay(values: np.ndarray) -> tuple[float, float]:
    """DAVIS's recall (fraction > 0.5) and decay (first-quarter mean minus last-quarter mean).

    The quarters are split as in DAVIS (four bins between rounded, evenly spaced edges
    that share their end frames), without its 8-bit index wrap past 256 frames.
    """
    recall = float(np.mean(values > 0.5))
    edges = (np.round(np.linspace(1, len(values), 5) + 1e-10) - 1).astype(int)
    first = values[edges[0] : edges[1] + 1]
    last = values[edges[3] : edges[4] + 1]
    return recall, float(first.mean() - last.mean())


def evaluate_video(
    pred: Any,
    gt: Any,
    labelled_frames: Iterable[int],
    spacing: float | Sequence[float] | None = None,
    exclude: Iterable[int] | None = None,
    *,
    name: str = "video",
    bound_th: float = DEFAULT_BOUND_TH,
    reference_rule: str = "",
) -> VideoMetrics:
    """Score every frame of one video and average over the frames that are not references.

    Args:
        pred: predicted masks ``(T, H, W)``, bool or 0/1 (numpy or torch).
        gt: ground-truth masks ``(T, H, W)``, same shape.
        labelled_frames: the frames given to the method as references at test time;
            scored but not averaged (their prediction is the given label). Required,
            so that nobody forgets them; pass ``()`` for a method without references.
        spacing: pixel spacing ``(row, column)`` (or one number) in mm from the file
            header, giving Hausdorff distances in mm; ``None`` gives pixels.
        exclude: further frames to leave out of the averages (e.g. unannotated ones).
        name: the video's name in the results and messages.
        bound_th: DAVIS boundary tolerance for F.
        reference_rule: how the references were chosen (a protocol's note, kept in the report).

    Raises:
        InputError: bad masks, spacing or frame indices, or no frame left to evaluate.
    """
    p = as_binary_masks(pred, f"{name} pred", 3)
    g = as_binary_masks(gt, f"{name} gt", 3)
    if p.shape != g.shape:
        raise InputError(f"{name} pred", f"shape {tuple(p.shape)} differs from the ground truth's {tuple(g.shape)}")
    step, unit = _spacing(spacing)
    refs = _frame_set(labelled_frames, p.shape[0], f"{name} labelled_frames")
    skipped = _frame_set(exclude, p.shape[0], f"{name} exclude") - refs
    if len(refs | skipped) == p.shape[0]:
        raise InputError(name, "no frame left to evaluate once references and excluded frames are left out")
    j = region_similarity_batch(p, g)
    f = contour_accuracy_batch(p, g, bound_th)
    dice = dice_batch(p, g)
    hd95, hd_max = hausdorff_batch(p, g, step)
    status = ["reference" if t in refs else "excluded" if t in skipped else "evaluated" for t in range(p.shape[0])]
    pred_empty, gt_empty = ~p.any(axis=(1, 2)), ~g.any(axis=(1, 2))
    frames = tuple(
        FrameMetrics(name, t, status[t], float(j[t]), float(f[t]), float((j[t] + f[t]) / 2), float(dice[t]),
                     float(hd95[t]), float(hd_max[t]), bool(gt_empty[t]), bool(pred_empty[t]))
        for t in range(p.shape[0])
    )
    result = _video_means(name, unit, frames, sorted(refs), sorted(skipped))
    return dataclasses.replace(result, reference_rule=reference_rule) if reference_rule else result


def _video_means(
    name: str, unit: str, frames: tuple[FrameMetrics, ...], refs: list[int], skipped: list[int]
) -> VideoMetrics:
    """Average the evaluated frames of one video and count its empty-frame cases."""
    used = [fm for fm in frames if fm.status == "evaluated"]
    col = {k: np.array([getattr(fm, k) for fm in used], dtype=np.float64) for k in ("j", "f", "dice", "hd95", "hd_max")}
    j_recall, j_decay = _recall_decay(col["j"])
    f_recall, f_decay = _recall_decay(col["f"])
    j_mean, f_mean = float(col["j"].mean()), float(col["f"].mean())
    return VideoMetrics(
        name=name, unit=unit, j=j_mean, f=f_mean, jf=(j_mean + f_mean) / 2, dice=float(col["dice"].mean()),
        hd95=float(col["hd95"].mean()), hd_max=float(col["hd_max"].mean()),
        j_recall=j_recall, f_recall=f_recall, j_decay=j_decay, f_decay=f_decay, n_frames=len(used),
        n_frames_both_empty=sum(fm.gt_empty and fm.pred_empty for fm in used),
        n_missed=sum(fm.pred_empty and not fm.gt_empty for fm in used),
        n_false_positive=sum(fm.gt_empty and not fm.pred_empty for fm in used),
        reference_frames=tuple(refs), excluded_frames=tuple(skipped), frames=frames,
    )


def summarise(videos: Sequence[VideoMetrics]) -> dict[str, Any]:
    """Dataset scores: each metric averaged per video, then over videos (as DAVIS).

    The global J&F is the mean over videos of ``(mean J + mean F) / 2``, which equals
    ``(global J + global F) / 2``. Frame counts are summed. When videos measure
    Hausdorff distances in different units (some files give a pixel spacing, some do
    not), a mean of millimetres and pixels would mean nothing: HD95 and HD max are then
    NaN, ``unit`` is ``mixed`` and a warning says so; the other scores stay valid.

    Raises:
        InputError: no videos.
    """
    if not videos:
        raise InputError("summarise", "no videos to summarise")
    attrs = ("j", "f", "jf", "dice", "hd95", "hd_max", "j_recall", "f_recall", "j_decay", "f_decay")
    summary: dict[str, Any] = {
        key: float(np.mean([getattr(v, attr) for v in videos])) for key, attr in zip(SUMMARY_KEYS, attrs)
    }
    units = sorted({v.unit for v in videos})
    if len(units) > 1:
        logger.warning("videos mix Hausdorff units %s: HD95 and HD max are not averaged; evaluate every video "
                       "with its spacing, or all with spacing=None for pixels", units)
        summary.update(HD95=math.nan, HD_max=math.nan)
    summary.update(
        unit=units[0] if len(units) == 1 else "mixed",
        n_videos=len(videos),
        n_frames=sum(v.n_frames for v in videos),
        n_frames_both_empty=sum(v.n_frames_both_empty for v in videos),
        n_missed=sum(v.n_missed for v in videos),
        n_false_positive=sum(v.n_false_positive for v in videos),
        averaging="mean over the evaluated frames of each video, then mean over videos",
    )
    rules = [v.reference_rule for v in videos if v.reference_rule]
    if rules:
        summary["reference_rules"] = {rule: rules.count(rule) for rule in sorted(set(rules))}
    logger.debug("summarised %d videos: J&F %.4f", len(videos), summary["J&F"])
    return summary
