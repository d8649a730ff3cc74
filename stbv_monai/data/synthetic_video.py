"""Synthetic B-mode breast-ultrasound videos: anatomy + lesion + probe motion through a scanner model.

Each frame samples the video's tissue canvas (anatomy and speckle, fixed in the tissue) through
the probe motion, composites the lesion sliced at the current elevation, then forms the image
as a scanner does: backscatter times Rayleigh speckle, attenuation accumulated down each beam
line (posterior shadowing and enhancement), depth attenuation partly undone by a TGC curve,
slow gain drift, electronic noise, and log compression to a dynamic range. The mask is the
lesion region computed at the same pixel positions, so mask and image always agree.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from stbv_monai.data.io import MIN_FRAMES
from stbv_monai.data.synthetic_anatomy import Canvas, gland_band, render_canvas, sample_anatomy, speckle_psf
from stbv_monai.data.synthetic_lesion import Lesion, render_lesion, sample_lesion
from stbv_monai.data.synthetic_motion import Motion, choose_exit_mode, sample_motion, tissue_coords
from stbv_monai.errors import InputError

__all__ = ["FOV_MM", "FPS", "MIN_SIZE", "SyntheticVideo", "Scanner", "check_arguments", "sample_scanner",
           "synthesize_video"]

logger = logging.getLogger(__name__)

#: Imaging depth (and width) of the field of view in mm, as for a linear breast probe.
FOV_MM = 40.0
#: Frame rate recorded in the written videos.
FPS = 20.0
#: Smallest frame size that still shows the layered anatomy and a lesion.
MIN_SIZE = 32
_CHUNK_PIXELS = 600_000  # frames are rendered in batches of about this many pixels
_ATTEMPTS = 8


@dataclass
class SyntheticVideo:
    """One generated video.

    Attributes:
        frames: ``(T, S, S)`` float32 B-mode frames in [0, 1].
        mask: ``(T, S, S)`` uint8 lesion masks in {0, 1}.
        kind: lesion kind (see ``synthetic_lesion.LESION_KINDS``).
        exit_mode: how the lesion leaves the view, or ``"none"``.
        spacing: pixel spacing ``(row, column)`` in mm.
    """

    frames: np.ndarray
    mask: np.ndarray
    kind: str
    exit_mode: str
    spacing: tuple[float, float]


@dataclass
class Scanner:
    """Per-video scanner settings.

    Attributes:
        dynamic_range: log-compression range in dB. reference: amplitude shown as white.
        gamma: grey-map exponent. depth_gain: ``(S,)`` linear gain per row: depth attenuation
            times the TGC curve (which undoes most of it, with slider bumps).
        noise: electronic noise amplitude. decorrelation: weight of fresh speckle per frame.
        psf: speckle point-spread sigmas ``(axial, lateral)`` in output pixels.
    """

    dynamic_range: float
    reference: float
    gamma: float
    depth_gain: np.ndarray
    noise: float
    decorrelation: float
    psf: tuple[float, float]


def check_arguments(videos: int, frames: int, size: int, exit_prob: float = 0.5, workers: int = 1) -> None:
    """Reject generation parameters that cannot make a usable two-shot dataset.

    Raises:
        InputError: ``videos < 1``, ``frames < 3``, ``size < 32``, ``exit_prob`` outside [0, 1], ``workers < 1``.
    """
    checks = [
        ("videos", videos, 1, "at least 1 video is needed"),
        ("frames", frames, MIN_FRAMES, f"each video needs at least {MIN_FRAMES} frames (two are labelled)"),
        ("size", size, MIN_SIZE, f"frames must be at least {MIN_SIZE} pixels wide to show the anatomy"),
        ("workers", workers, 1, "at least 1 worker process is needed"),
    ]
    for name, value, least, why in checks:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise InputError(f"synthetic {name}", f"must be an integer, got {value!r}")
        if value < least:
            raise InputError(f"synthetic {name}", f"{why}; got {value}")
    if isinstance(exit_prob, bool) or not isinstance(exit_prob, (int, float, np.floating, np.integer)) \
            or not 0.0 <= float(exit_prob) <= 1.0:
        raise InputError("synthetic exit_prob", f"must be a probability in [0, 1]; got {exit_prob}")


def sample_scanner(rng: np.random.Generator, size: int) -> Scanner:
    """Draw scanner settings: dynamic range, overall gain, TGC sliders, noise."""
    depth = (np.arange(size) + 0.5) / size
    attenuation_db = rng.uniform(30, 45) * depth  # 0.5-0.7 dB/cm/MHz at ~10 MHz over 4 cm, both ways
    tgc_db = attenuation_db * rng.uniform(0.8, 1.0)  # the sonographer undoes most of it...
    knots = np.linspace(0, 1, 7)
    tgc_db += np.interp(depth, knots, rng.uniform(-2.0, 2.0, knots.size))  # ...with uneven sliders
    return Scanner(
        dynamic_range=float(rng.uniform(50, 60)),
        reference=float(rng.uniform(9.0, 14.0)),
        gamma=float(rng.uniform(0.95, 1.25)),
        depth_gain=(10 ** ((tgc_db - attenuation_db) / 20)).astype(np.float32),
        noise=float(rng.uniform(0.004, 0.01)),
        decorrelation=float(rng.uniform(0.12, 0.22)),
        psf=speckle_psf(size),
    )


def synthesize_video(index: int, frames: int = 100, size: int = 128, seed: int = 0,
                     exit_prob: float = 0.5) -> SyntheticVideo:
    """Generate video ``index`` of the dataset with ``seed``, independently of every other video.

    The random stream is ``numpy.random.default_rng([seed, index])``, so a video is the same
    whichever process generates it and in whatever order. A draw whose lesion is visible in
    fewer than two frames (possible for very short videos) is redrawn from ``[seed, index, k]``.

    Args:
        index: video number within the dataset.
        frames: number of frames ``T`` (at least 3).
        size: frame height and width ``S`` in pixels.
        seed: dataset seed.
        exit_prob: probability that the lesion is out of view in some frames at the start or end.

    Raises:
        InputError: ``frames < 3``, ``size < 32`` or ``exit_prob`` outside [0, 1].
    """
    check_arguments(1, frames, size, exit_prob)
    for attempt in range(_ATTEMPTS):
        key = [seed, index] if attempt == 0 else [seed, index, attempt]
        video = _draw_video(np.random.default_rng(key), frames, size, exit_prob)
        if np.count_nonzero(video.mask.any(axis=(1, 2))) >= 2:
            return video
        logger.debug("video %d: lesion visible in < 2 frames, redrawing (attempt %d)", index, attempt + 1)
    raise RuntimeError(f"could not draw a video with the lesion visible in two frames ({frames} frames)")


def _draw_video(rng: np.random.Generator, frames: int, size: int, exit_prob: float) -> SyntheticVideo:
    """One draw of patient, lesion, probe motion and scanner, rendered to frames and masks."""
    anatomy = sample_anatomy(rng)
    lesion = sample_lesion(rng, 0.0, gland_band(anatomy, 0.0))
    motion = sample_motion(rng, frames, lesion.centre, lesion.max_radius(), choose_exit_mode(rng, exit_prob))
    x_range = (float(motion.shift.min()) - 0.12, float(motion.shift.max()) + 1.15)
    canvas = render_canvas(rng, anatomy, x_range, size, (*lesion.centre, lesion.max_radius()))
    scanner = sample_scanner(rng, size)
    images = np.empty((frames, size, size), np.float32)
    masks = np.empty((frames, size, size), np.uint8)
    step = max(1, _CHUNK_PIXELS // (size * size))
    for start in range(0, frames, step):
        ts = np.arange(start, min(start + step, frames))
        images[ts], masks[ts] = render_frames(rng, canvas, lesion, motion, scanner, ts)
    spacing = (FOV_MM / size, FOV_MM / size)
    return SyntheticVideo(frames=images, mask=masks, kind=lesion.kind, exit_mode=motion.mode, spacing=spacing)


def render_frames(rng: np.random.Generator, canvas: Canvas, lesion: Lesion, motion: Motion, scanner: Scanner,
                   ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """B-mode frames ``ts`` and their lesion masks, each ``(N, S, S)``."""
    size = scanner.depth_gain.size
    x, y = tissue_coords(motion, ts, size)
    sample = _Bilinear(canvas.echo.shape, y * canvas.px - 0.5, (x - canvas.x0) * canvas.px - 0.5)
    layer = render_lesion(lesion, x, y, motion.elev[ts])
    echo = sample(canvas.echo) * layer.gain * (1 - layer.weight) + layer.echo * layer.weight
    atten = sample(canvas.atten) + layer.atten
    shade = np.exp(-np.cumsum(atten, axis=1) / size)
    shade = ndi.gaussian_filter1d(shade, 0.8, axis=2, mode="nearest")  # finite beam width blurs shadows
    speckle = _speckle(rng, canvas, motion.phase[ts], scanner, sample)
    gain = (10 ** (motion.gain_db[ts] / 20)).astype(np.float32)[:, None, None]
    envelope = (echo * speckle + layer.specular) * shade * scanner.depth_gain[None, :, None] * gain
    noise_power = np.float32(scanner.noise ** 2) * rng.standard_exponential(envelope.shape, np.float32)
    envelope = np.sqrt(envelope * envelope + noise_power)  # incoherent sum with Rayleigh electronic noise
    # display resampling averages over part of a speckle grain, filling in the deepest nulls
    envelope = ndi.gaussian_filter(envelope, (0, 0.5 * scanner.psf[0], 0.45 * scanner.psf[1]))
    db = 20 * np.log10(np.maximum(envelope, 1e-6) / scanner.reference)
    image = np.clip(1 + db / scanner.dynamic_range, 0, 1) ** scanner.gamma
    return image.astype(np.float32), layer.mask.astype(np.uint8)


class _Bilinear:
    """Bilinear sampling of canvas planes at fixed points; indices and weights are computed once.

    Several times faster than ``scipy.ndimage.map_coordinates(order=1)`` when many planes share
    the same points. Points outside the canvas take the nearest edge value.
    """

    def __init__(self, shape: tuple[int, int], rows: np.ndarray, cols: np.ndarray) -> None:
        h, w = shape
        rows = np.clip(rows, 0, h - 1.001)
        cols = np.clip(cols, 0, w - 1.001)
        r0, c0 = rows.astype(np.int32), cols.astype(np.int32)
        self.fr, self.fc = (rows - r0).astype(np.float32), (cols - c0).astype(np.float32)
        self.index = r0 * np.int32(w) + c0
        self.corners = (self.index, self.index + 1, self.index + w, self.index + w + 1)

    def __call__(self, plane: np.ndarray) -> np.ndarray:
        flat = plane.ravel()
        a, b, c, d = (flat.take(i) for i in self.corners)
        top = a + (b - a) * self.fc
        bottom = c + (d - c) * self.fc
        return top + (bottom - top) * self.fr


def _speckle(rng: np.random.Generator, canvas: Canvas, phase: np.ndarray, scanner: Scanner,
             sample: _Bilinear) -> np.ndarray:
    """Rayleigh speckle amplitude: tissue-fixed fields rotated by the elevational phase, plus fresh noise.

    ``cos(phase) A + sin(phase) B`` keeps unit power while decorrelating gradually as the plane
    moves through the tissue; a small fresh field per frame adds frame-to-frame decorrelation.
    """
    c, s = np.cos(phase).astype(np.float32)[:, None, None], np.sin(phase).astype(np.float32)[:, None, None]
    keep = np.float32(np.sqrt(1 - scanner.decorrelation ** 2))
    parts = []
    for a, b in ((0, 2), (1, 3)):  # real and imaginary parts
        # blurred uniform noise is near-Gaussian after the PSF and several times cheaper to draw
        fresh = rng.random(phase.shape + (scanner.depth_gain.size,) * 2, np.float32)
        fresh = ndi.gaussian_filter(fresh - np.float32(0.5), (0, *scanner.psf))
        fresh /= max(float(fresh.std()), 1e-8) * np.float32(np.sqrt(2))
        fixed = c * sample(canvas.speckle[a]) + s * sample(canvas.speckle[b])
        parts.append(keep * fixed + scanner.decorrelation * fresh)
    return np.hypot(*parts)
