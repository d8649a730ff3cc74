"""Probe motion for synthetic B-mode videos: sweep, compression, breathing, jitter, gain drift.

A sonographer sweeps the probe across the breast (the lesion drifts across the image and may
leave it), tilts it through the lesion's elevation (the cross-section grows and shrinks, and
the speckle decorrelates), presses and releases (tissue squashes vertically and bulges
laterally), while the patient breathes and the hand shakes. :func:`tissue_coords` turns the
motion into the tissue coordinates seen by each image pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

__all__ = ["EXIT_MODES", "Motion", "sample_motion", "tissue_coords", "choose_exit_mode"]

#: How the lesion may leave the view: sideways (sweep) or out of plane (elevation), at either end.
EXIT_MODES = ("lateral_start", "lateral_end", "elevation_start", "elevation_end")


@dataclass
class Motion:
    """Per-frame probe state, arrays of length ``T``.

    Attributes:
        shift: tissue ``x`` at the left image edge (lateral sweep plus hand jitter).
        tilt: lateral shear per unit depth (probe rocking).
        squash: compressive strain from probe pressure (0 = resting).
        breath: extra depth shift of deep tissue from breathing (per unit depth).
        elev: scan-plane elevation through the lesion, normalised (``|z| >= 1`` misses it).
        phase: speckle decorrelation phase (radians) driven by the elevational motion.
        gain_db: slow drift of the overall gain, in dB.
        mode: ``"none"`` or one of :data:`EXIT_MODES`.
    """

    shift: np.ndarray
    tilt: np.ndarray
    squash: np.ndarray
    breath: np.ndarray
    elev: np.ndarray
    phase: np.ndarray
    gain_db: np.ndarray
    mode: str


def choose_exit_mode(rng: np.random.Generator, exit_prob: float) -> str:
    """``"none"`` or, with probability ``exit_prob``, a random way for the lesion to leave the view."""
    if rng.random() < exit_prob:
        return EXIT_MODES[int(rng.integers(len(EXIT_MODES)))]
    return "none"


def _smooth(rng: np.random.Generator, n: int, frames: float) -> np.ndarray:
    """Smooth zero-mean noise of unit scale with correlation length ``frames``."""
    pad = int(3 * frames) + 1
    noise = ndi.gaussian_filter1d(rng.standard_normal(n + 2 * pad), frames)[pad:pad + n]
    return noise / max(float(np.abs(noise).max()), 1e-8)


def _lateral_path(rng: np.random.Generator, tau: np.ndarray, mode: str, extent: float) -> np.ndarray:
    """Image ``x`` of the lesion centre over time; for lateral exits it starts fully outside.

    An ease-out sweep ``a + (b - a)(1 - (1 - tau)^2)``: fast while entering, slow once in view.
    ``a`` is solved so the lesion (radius ``extent``) is entirely outside until ``tau = f``.
    """
    if mode not in ("lateral_start", "lateral_end"):
        p0, p1 = rng.uniform(0.3, 0.7, 2)
        ease = tau * tau * (3 - 2 * tau)
        wobble = rng.uniform(0.01, 0.06) * np.sin(2 * np.pi * rng.uniform(0.5, 1.5) * tau + rng.uniform(0, 6.3))
        path = p0 + (p1 - p0) * ease + wobble
    else:
        f, b = rng.uniform(0.12, 0.3), rng.uniform(0.35, 0.65)
        q = 1 - (1 - f) ** 2
        a = (-extent - b * q) / (1 - q)
        t = tau if mode == "lateral_start" else 1 - tau
        path = a + (b - a) * (1 - (1 - t) ** 2)
    return 1 - path if rng.random() < 0.5 else path


def _elevation_path(rng: np.random.Generator, tau: np.ndarray, mode: str) -> np.ndarray:
    """Normalised elevation of the scan plane through the lesion over time."""
    if mode in ("elevation_start", "elevation_end"):
        f, end = rng.uniform(0.12, 0.3), rng.uniform(0.0, 0.5)
        start = (-1 - end * f) / (1 - f)  # |z| > 1 (lesion missed) until tau = f
        t = tau if mode == "elevation_start" else 1 - tau
        path = start + (end - start) * t
    else:
        start = rng.uniform(-0.6, 0.6)
        end = np.clip(start + np.sign(rng.standard_normal()) * rng.uniform(0.3, 0.9), -0.7, 0.7)
        path = start + (end - start) * tau
    return path if rng.random() < 0.5 else -path


def sample_motion(rng: np.random.Generator, frames: int, centre: tuple[float, float], extent: float,
                  mode: str) -> Motion:
    """Draw the probe motion of a ``frames``-long video around a lesion at tissue ``centre``.

    Args:
        rng: the video's random generator.
        frames: number of frames ``T``.
        centre: lesion centre ``(x, y)`` in tissue coordinates.
        extent: bound of the lesion's in-plane radius (for lateral exits).
        mode: ``"none"`` or one of :data:`EXIT_MODES`.
    """
    tau = np.linspace(0.0, 1.0, frames)
    tilt = rng.uniform(-0.02, 0.02) + 0.012 * _smooth(rng, frames, 12)
    path = _lateral_path(rng, tau, mode, extent + 0.03)
    jitter = 0.004 * _smooth(rng, frames, 3)
    shift = centre[0] - path - tilt * centre[1] + jitter
    cycles, amp = rng.uniform(0.5, 2.5), rng.uniform(0.0, 0.1)
    squash = amp * 0.5 * (1 - np.cos(2 * np.pi * cycles * tau + rng.uniform(0, 2 * np.pi)))
    period = rng.uniform(60, 100) / max(frames - 1, 1)
    breath = rng.uniform(0.003, 0.01) * np.sin(2 * np.pi * tau / period + rng.uniform(0, 2 * np.pi))
    elev = _elevation_path(rng, tau, mode)
    travel = abs(elev[-1] - elev[0])
    phase = (0.5 * np.pi) * min(1.0, travel / 0.4) * (elev - elev[0]) / max(travel, 1e-6)
    phase = np.abs(phase) + 0.05 * _smooth(rng, frames, 5)
    gain_db = rng.uniform(-2.5, 2.5) * np.sin(2 * np.pi * rng.uniform(0.3, 1.0) * tau + rng.uniform(0, 6.3))
    gain_db += rng.uniform(-1.5, 1.5) * tau
    return Motion(shift=shift, tilt=tilt, squash=squash, breath=breath, elev=elev, phase=phase,
                  gain_db=gain_db, mode=mode)


def tissue_coords(motion: Motion, frames: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Tissue ``(x, y)`` seen by every pixel of the given frames, each ``(N, size, size)`` float32.

    The skin stays under the probe (depth 0 maps to 0); pressing squashes the compliant
    superficial tissue most, so deeper tissue comes into view, and bulges it sideways.
    """
    grid = (np.arange(size, dtype=np.float32) + 0.5) / size
    yi, xi = grid[None, :, None], grid[None, None, :]
    c = motion.squash[frames].astype(np.float32)[:, None, None]
    b = motion.breath[frames].astype(np.float32)[:, None, None]
    y = yi * (1 + c * (1.0 - 0.5 * yi)) + b * yi
    tilt = motion.tilt[frames].astype(np.float32)[:, None, None]
    shift = motion.shift[frames].astype(np.float32)[:, None, None]
    x = shift + 0.5 + (xi - 0.5) / (1 + 0.3 * c) + tilt * yi
    return np.broadcast_to(x, y.shape[:1] + (size, size)).astype(np.float32), \
        np.broadcast_to(y, y.shape[:1] + (size, size)).astype(np.float32)
