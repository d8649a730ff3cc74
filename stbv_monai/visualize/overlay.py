"""Draw lesion masks onto grayscale frames and save them as an MP4 or GIF a person can watch."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from scipy import ndimage

from stbv_monai.data.io import atomic_path
from stbv_monai.errors import InputError

__all__ = ["overlay_frames", "write_overlay"]


def overlay_frames(frames: np.ndarray, mask: np.ndarray, gt: np.ndarray | None = None,
                   color: tuple[int, int, int] = (255, 200, 0), gt_color: tuple[int, int, int] = (0, 200, 255),
                   alpha: float = 0.25) -> np.ndarray:
    """``(T, H, W)`` frames in [0, 1] and masks → ``(T, H, W, 3)`` uint8 RGB.

    The prediction is a tinted area with a solid outline; the ground truth, if given, an outline only.
    """
    rgb = np.repeat((np.clip(frames, 0, 1) * 255).astype(np.float32)[..., None], 3, axis=-1)
    m = mask.astype(bool)
    rgb[m] = (1 - alpha) * rgb[m] + alpha * np.asarray(color, np.float32)
    rgb[_outline(m)] = color
    if gt is not None:
        rgb[_outline(gt.astype(bool))] = gt_color
    return rgb.astype(np.uint8)


def _outline(mask: np.ndarray) -> np.ndarray:
    """Pixels of each frame's mask that touch the background (4-neighbourhood)."""
    inner = ndimage.binary_erosion(mask, structure=np.array([[[0, 1, 0], [1, 1, 1], [0, 1, 0]]], bool))
    return mask & ~inner


def write_overlay(path: str | os.PathLike, rgb: np.ndarray, fps: float = 10.0) -> Path:
    """Write ``(T, H, W, 3)`` uint8 frames as ``.mp4`` (H.264) or ``.gif``, atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".mp4", ".gif"):
        raise InputError(path, "overlays are written as .mp4 or .gif")
    with atomic_path(path) as tmp:
        if suffix == ".gif":
            import imageio.v3 as iio

            iio.imwrite(tmp, rgb, extension=".gif", duration=1000.0 / fps, loop=0)
        else:
            _write_rgb_movie(tmp, rgb, fps)
    return path


def _write_rgb_movie(path: Path, rgb: np.ndarray, fps: float) -> None:
    import imageio_ffmpeg

    t, h, w, _ = rgb.shape
    rgb = np.pad(rgb, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")  # yuv420p needs even sizes
    gen = imageio_ffmpeg.write_frames(str(path), (rgb.shape[2], rgb.shape[1]), pix_fmt_in="rgb24", fps=fps,
                                      codec="libx264", quality=None, output_params=["-crf", "18"],
                                      macro_block_size=1, ffmpeg_log_level="error")
    gen.send(None)
    for frame in rgb:
        gen.send(np.ascontiguousarray(frame))
    gen.close()
