"""Breast lesions for synthetic B-mode videos: 3-D shapes sliced by the moving scan plane.

A lesion is a star-shaped solid in tissue coordinates. Its cross-section in the scan plane at
normalised elevation ``z`` (``-1..1`` spans the lesion) is an ellipse scaled by
``sqrt(1 - z^2)`` whose margin is modulated by harmonics and angular spikes that drift with
``z``, so the outline grows, shrinks and changes shape as the probe sweeps through it, and
vanishes once the plane leaves the lesion. Kinds follow BI-RADS descriptors: anechoic cysts,
oval circumscribed (fibroadenoma-like) masses, microlobulated, irregular and spiculated masses,
with internal heterogeneity, echogenic halo, calcifications and posterior features (acoustic
enhancement or shadowing) chosen per lesion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["LESION_KINDS", "Lesion", "LesionLayer", "sample_lesion", "render_lesion"]

#: Lesion kinds and how often each is drawn.
LESION_KINDS = {"cyst": 0.15, "oval": 0.3, "microlobulated": 0.15, "irregular": 0.2, "spiculated": 0.2}
_ANGLES = 720  # resolution of the margin look-up table over the polar angle
_SPICULE_REACH = 0.8  # how far spicule lines extend beyond the margin, in lesion radii


@dataclass
class Lesion:
    """One lesion's geometry and echo character (tissue units, see ``synthetic_anatomy``).

    Attributes:
        kind: one of :data:`LESION_KINDS`.
        centre: ``(x, y)`` in tissue coordinates. radii: ``(rx, ry)`` of the largest cross-section.
        angle: tilt of the long axis (radians).
        harmonics: ``(K, 4)`` rows ``(order, amplitude, phase, drift with z)`` of the margin.
        spikes: ``(S, 4)`` rows ``(angle, amplitude, angular width, drift)``: angular margins.
        texture: ``(F, 4)`` rows ``(kx, ky, phase, drift)``: internal heterogeneity.
        calcs: ``(C, 3)`` rows ``(u, v, amplitude)``: microcalcifications (normalised coords).
        echo: mean internal amplitude. hetero: log-amplitude spread of internal echoes.
        edge: margin sharpness (transition width). halo: echogenic rim gain, ``halo_width`` its width.
        posterior: attenuation inside (>0 shadowing, <0 enhancement). edge_shadow: lateral-edge shadows.
        spicules: darkening of thin lines radiating from the spikes outside the mass.
    """

    kind: str
    centre: tuple[float, float]
    radii: tuple[float, float]
    angle: float
    harmonics: np.ndarray
    spikes: np.ndarray
    texture: np.ndarray
    calcs: np.ndarray
    echo: float
    hetero: float
    edge: float
    halo: float
    halo_width: float
    posterior: float
    edge_shadow: float
    spicules: float

    def max_radius(self) -> float:
        """An upper bound of the distance from the centre to any lesion pixel, halo included."""
        bump = np.abs(self.harmonics[:, 1]).sum() + (self.spikes[:, 1].max() if len(self.spikes) else 0.0)
        reach = _SPICULE_REACH if self.spicules > 0 else 0.0
        return max(self.radii) * (1.0 + bump + reach) + self.edge + 3 * self.halo_width


def _rows(*cols: np.ndarray) -> np.ndarray:
    return np.stack(cols, axis=1) if len(cols[0]) else np.zeros((0, len(cols)))


def _margin(rng: np.random.Generator, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Harmonics and spikes of the margin: smooth for benign kinds, lobulated or angular otherwise."""
    spec = {  # (orders, amplitude range, spikes, spike amplitude, spike width)
        "cyst": ((2, 3), (0.0, 0.03), 0, (0, 0), (0.2, 0.2)),
        "oval": ((2, 4), (0.02, 0.07), 0, (0, 0), (0.2, 0.2)),
        "microlobulated": ((2, 3), (0.03, 0.07), 0, (0, 0), (0.2, 0.2)),
        "irregular": ((2, 6), (0.05, 0.12), int(rng.integers(3, 6)), (0.08, 0.2), (0.25, 0.45)),
        "spiculated": ((2, 5), (0.04, 0.09), int(rng.integers(6, 12)), (0.25, 0.55), (0.08, 0.16)),
    }[kind]
    orders = np.arange(spec[0][0], spec[0][1] + 1, dtype=float)
    amp = rng.uniform(*spec[1], orders.size) * (2.0 / orders) ** 0.7  # coarse lobes dominate fine ones
    if kind == "microlobulated":  # many small lobulations on top of a gentle outline
        fine = rng.integers(9, 15, 2).astype(float)
        orders, amp = np.concatenate([orders, fine]), np.concatenate([amp, rng.uniform(0.025, 0.045, 2)])
    harmonics = _rows(orders, amp, rng.uniform(0, 2 * np.pi, orders.size), rng.uniform(-1.5, 1.5, orders.size))
    n = spec[2]
    spikes = _rows(rng.uniform(0, 2 * np.pi, n), rng.uniform(*spec[3], n), rng.uniform(*spec[4], n),
                   rng.uniform(0, 2 * np.pi, n))
    return harmonics, spikes


def sample_lesion(rng: np.random.Generator, x: float, gland: tuple[float, float]) -> Lesion:
    """Draw a lesion centred at lateral ``x`` within the fibroglandular band ``gland`` = (top, bottom)."""
    kinds = list(LESION_KINDS)
    kind = kinds[int(rng.choice(len(kinds), p=list(LESION_KINDS.values())))]
    malignant = kind in ("irregular", "spiculated")
    rx = rng.uniform(*{"cyst": (0.05, 0.11), "oval": (0.08, 0.17)}.get(kind, (0.07, 0.15)))
    aspects = {"cyst": (0.6, 0.9), "oval": (0.5, 0.75), "microlobulated": (0.65, 1.0)}  # ry / rx
    aspect = rng.uniform(*aspects.get(kind, (0.8, 1.3)))  # malignant: often taller than wide
    ry = rx * aspect
    top, bottom = gland
    y = float(np.clip(rng.uniform(top + 0.5 * ry, bottom - 0.6 * ry), 0.1 + ry, 0.7))
    harmonics, spikes = _margin(rng, kind)
    f = 6
    texture = _rows(rng.uniform(-9, 9, f), rng.uniform(-9, 9, f), rng.uniform(0, 2 * np.pi, f), rng.uniform(-3, 3, f))
    n_calcs = int(rng.integers(1, 6)) if malignant and rng.random() < 0.5 else 0
    calcs = _rows(rng.uniform(-0.6, 0.6, n_calcs), rng.uniform(-0.6, 0.6, n_calcs), rng.uniform(0.8, 2.0, n_calcs))
    posterior = {"cyst": rng.uniform(-6, -3.5), "oval": rng.uniform(-2.5, 0.5),
                 "microlobulated": rng.uniform(-1, 4)}.get(kind, rng.uniform(4, 9))
    return Lesion(
        kind=kind, centre=(float(x), y), radii=(float(rx), float(ry)),
        angle=float(rng.uniform(-0.35, 0.35)) if kind != "cyst" else float(rng.uniform(-0.15, 0.15)),
        harmonics=harmonics, spikes=spikes, texture=texture, calcs=calcs,
        echo=0.012 if kind == "cyst" else float(rng.uniform(0.04, 0.085) if malignant else rng.uniform(0.05, 0.11)),
        hetero=0.15 if kind == "cyst" else float(rng.uniform(0.3, 0.6)),
        edge=float(rng.uniform(0.004, 0.006) if not malignant else rng.uniform(0.008, 0.016)),
        halo=float(rng.uniform(0.5, 1.2)) if malignant and rng.random() < 0.7 else 0.0,
        halo_width=float(rng.uniform(0.01, 0.02)),
        posterior=float(posterior),
        edge_shadow=float(rng.uniform(15, 30)) if kind in ("cyst", "oval") else 0.0,
        spicules=float(rng.uniform(0.4, 0.7)) if kind == "spiculated" else 0.0,
    )


@dataclass
class LesionLayer:
    """The lesion as seen in a batch of frames, all arrays ``(N, H, W)``.

    Attributes:
        mask: bool, exactly the lesion region. weight: soft lesion occupancy used to composite echoes.
        echo: lesion echo amplitude (meaningful where ``weight > 0``).
        gain: multiplier for the surrounding tissue echo (echogenic halo, spicule lines).
        atten: attenuation added inside and around the lesion (posterior shadowing/enhancement).
        specular: amplitude of point reflectors that do not speckle (microcalcifications).
    """

    mask: np.ndarray
    weight: np.ndarray
    echo: np.ndarray
    gain: np.ndarray
    atten: np.ndarray
    specular: np.ndarray


def _margin_table(lesion: Lesion, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalised margin radius and spike profile over ``_ANGLES`` polar angles, per frame ``(N, A)``."""
    theta = np.linspace(-np.pi, np.pi, _ANGLES + 1)[None, :]
    zc = np.clip(z, -1.0, 1.0)[:, None]
    radius = np.ones((z.size, theta.shape[1]))
    for order, amp, phase, drift in lesion.harmonics:
        radius += amp * np.cos(order * theta + phase + drift * zc)
    spike = np.zeros_like(radius)
    for angle, amp, width, drift in lesion.spikes:
        delta = np.angle(np.exp(1j * (theta - angle)))
        spike += amp * (0.6 + 0.4 * np.cos(2.0 * zc + drift)) * np.clip(1 - np.abs(delta) / width, 0, None) ** 1.5
    scale = np.sqrt(np.clip(1.0 - z.astype(float) ** 2, 0.0, None))[:, None]
    return (scale * (radius + spike)).astype(np.float32), spike.astype(np.float32)


def render_lesion(lesion: Lesion, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> LesionLayer:
    """Render the lesion at tissue coordinates ``x, y`` ``(N, H, W)`` for plane elevations ``z`` ``(N,)``.

    Only the image rectangle the lesion can reach in these frames is computed.
    """
    layer = _empty_layer(x.shape)
    reach = lesion.max_radius() + 0.02
    rows = np.flatnonzero((np.abs(y[:, :, 0] - lesion.centre[1]) < reach).any(axis=0))
    if rows.size == 0:
        return layer
    rows = slice(rows[0], rows[-1] + 1)
    cols = np.flatnonzero(np.abs(x[:, rows, :] - lesion.centre[0]).min(axis=(0, 1)) < reach)
    if cols.size == 0:
        return layer
    cols = slice(cols[0], cols[-1] + 1)
    part = _render_window(lesion, x[:, rows, cols], y[:, rows, cols], z)
    for name in ("mask", "weight", "echo", "gain", "atten", "specular"):
        getattr(layer, name)[:, rows, cols] = getattr(part, name)
    return layer


def _render_window(lesion: Lesion, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> LesionLayer:
    """:func:`render_lesion` on a window of the frames."""
    rx, ry = lesion.radii
    dx, dy = x - lesion.centre[0], y - lesion.centre[1]
    ca, sa = np.cos(lesion.angle), np.sin(lesion.angle)
    u, v = (dx * ca + dy * sa) / rx, (-dx * sa + dy * ca) / ry
    rho = np.hypot(u, v)
    layer = _empty_layer(x.shape)
    near = rho < lesion.max_radius() / min(rx, ry) + 0.5
    if not near.any():
        return layer
    idx = np.nonzero(near)
    uu, vv, rr = u[idx], v[idx], rho[idx]
    frame = idx[0]
    table, spikes = _margin_table(lesion, z)
    bins = np.round((np.arctan2(vv, uu) + np.pi) / (2 * np.pi) * _ANGLES).astype(np.int64)
    margin = table[frame, bins]
    dist = (rr - margin) * np.sqrt(rx * ry)  # signed distance to the margin, tissue units (<0 inside)
    weight = np.clip(0.5 - dist / lesion.edge, 0.0, 1.0) * (margin > 0)  # nothing left once the plane misses it
    layer.mask[idx] = dist < 0
    layer.weight[idx] = weight
    layer.echo[idx] = _internal_echo(lesion, uu, vv, z[frame])
    layer.gain[idx] = _surround_gain(lesion, dist, spikes[frame, bins], rr, margin)
    layer.atten[idx] = lesion.posterior * weight + _edge_shadow(lesion, dist, uu, rr)
    if len(lesion.calcs):
        layer.specular[idx] = _calcifications(lesion, uu, vv) * weight
    return layer


def _empty_layer(shape: tuple[int, ...]) -> LesionLayer:
    """A layer without lesion: tissue unchanged."""
    weight, echo, atten, specular = (np.zeros(shape, np.float32) for _ in range(4))
    return LesionLayer(mask=np.zeros(shape, bool), weight=weight, echo=echo, gain=np.ones(shape, np.float32),
                       atten=atten, specular=specular)


def _internal_echo(lesion: Lesion, u: np.ndarray, v: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Heterogeneous internal echoes: a log-normal texture that drifts with the elevation."""
    tex = np.zeros_like(u)
    for kx, ky, phase, drift in lesion.texture:
        tex += np.cos(kx * u + ky * v + phase + drift * z)
    tex /= np.sqrt(max(len(lesion.texture), 1) / 2.0)
    echo = lesion.echo * np.exp(lesion.hetero * tex - 0.5 * lesion.hetero ** 2)
    return echo.astype(np.float32)


def _calcifications(lesion: Lesion, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Bright punctate echoes (about 0.2 mm) at the lesion's microcalcifications."""
    sigma = 0.005 / min(lesion.radii)
    out = np.zeros_like(u)
    for cu, cv, amp in lesion.calcs:
        out += amp * np.exp(-((u - cu) ** 2 + (v - cv) ** 2) / sigma ** 2)
    return out.astype(np.float32)


def _surround_gain(lesion: Lesion, dist: np.ndarray, spike: np.ndarray, rho: np.ndarray,
                   margin: np.ndarray) -> np.ndarray:
    """Echogenic halo just outside the margin and dark spicule lines radiating from the spikes."""
    outside = np.clip(dist, 0.0, None)
    t = outside / lesion.halo_width
    gain = 1.0 + lesion.halo * t * np.exp(1.0 - t)
    if lesion.spicules > 0:
        reach = np.clip(1.0 - (rho - margin) / _SPICULE_REACH, 0.0, 1.0) * (dist > 0)
        gain *= 1.0 - lesion.spicules * np.clip(spike / max(lesion.spikes[:, 1].max(), 1e-6), 0, 1) ** 3 * reach
    return gain.astype(np.float32)


def _edge_shadow(lesion: Lesion, dist: np.ndarray, u: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """Refraction shadows under the lateral edges of smooth round masses."""
    if lesion.edge_shadow <= 0:
        return np.zeros_like(dist, dtype=np.float32)
    lateral = (u / np.maximum(rho, 1e-6)) ** 8
    return (lesion.edge_shadow * lateral * np.exp(-((dist / 0.006) ** 2))).astype(np.float32)
