"""Write each segmented video: the mask video in the input's format family, probabilities, an overlay."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
from ignite.engine import Engine, Events

from stbv_monai.data.io import write_mask, write_video
from stbv_monai.errors import InputError
from stbv_monai.visualize import overlay_frames, write_overlay

__all__ = ["PredictionWriter", "mask_path"]

logger = logging.getLogger(__name__)


def mask_path(output_dir: Path, name: str, input_format: str) -> Path:
    """NIfTI for NIfTI/DICOM inputs; a PNG frame folder for frame folders and movies (lossless)."""
    return output_dir / (f"{name}.nii.gz" if input_format in ("nifti", "dicom") else name)


class PredictionWriter:
    """Ignite handler writing ``masks/``, optionally ``probs/`` and ``overlays/`` under ``output_dir``.

    Args:
        output_dir: root folder of the written files.
        save_probs: also write probabilities (8-bit, like the frames) next to the masks.
        overlay: ``"mp4"``, ``"gif"`` or ``None``: a movie of the frames with the predicted
            outline (and the ground truth's, in another colour, where the label file has it).
        save_masks: write the mask videos (``False``: overlays only, e.g. previews of an evaluation).
        max_videos: write only the first ``max_videos`` videos of each run (``None``: all).
    """

    def __init__(self, output_dir: str | os.PathLike, save_probs: bool = False, overlay: str | None = "mp4",
                 save_masks: bool = True, max_videos: int | None = None) -> None:
        self.output_dir = Path(output_dir)
        self.save_probs = save_probs
        self.overlay = _overlay_format(overlay)
        self.save_masks = save_masks
        self.max_videos = max_videos

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        if self.max_videos is not None and engine.state.iteration > self.max_videos:
            return
        out = engine.state.output
        name, fmt = out["name"], out["format"]
        spacing = out["spacing"]
        if self.save_masks:
            write_mask(mask_path(self.output_dir / "masks", name, fmt), out["pred"], spacing=spacing)
        if self.save_probs:
            probs = out["probs"].detach().cpu().numpy()
            write_video(mask_path(self.output_dir / "probs", name, fmt), probs, spacing=spacing)
        if self.overlay:
            rgb = overlay_frames(out["frames"], out["pred"], gt=out.get("gt"))
            write_overlay(self.output_dir / "overlays" / f"{name}.{self.overlay}", rgb)
        logger.debug("wrote predictions of %s", name)


def _overlay_format(overlay: str | bool | None) -> str | None:
    """``"mp4"``/``"gif"``, or ``None`` for no overlay (``false``/``none`` from the command line too)."""
    if overlay is None or overlay is False or str(overlay).strip().lower() in ("false", "none", "null", "off", "0", ""):
        return None
    if str(overlay) not in ("mp4", "gif"):
        raise InputError("--overlay", f"expected mp4, gif or false, got {overlay!r}")
    return str(overlay)
