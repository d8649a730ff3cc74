"""Breast anatomy for synthetic B-mode videos: a tissue canvas the probe sweeps over.

The canvas is a 2-D map, in *tissue coordinates*, of what each point of the breast sends
back (backscatter amplitude), how much it attenuates the beam below it, and two complex
speckle fields. Frames are later sampled from it through the probe motion, so anatomy
and speckle move together as real tissue does.

Tissue coordinates: ``y`` is depth below the skin and ``x`` is lateral position, both in
units of the field of view (the image is 1 x 1; with the 40 mm default depth, 0.01 = 0.4 mm).
Layers from the skin down follow the sonographic anatomy of the breast: skin line, subcutaneous
fat with lobules and Cooper's ligaments, fibroglandular tissue (with a duct and fat islands),
retromammary fat, pectoralis fascia and muscle, chest wall with ribs and pleura.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

__all__ = ["Curve", "Anatomy", "Canvas", "sample_anatomy", "gland_band", "render_canvas", "speckle_psf", "unit_field"]

#: Canvas pixels per output pixel: the canvas is finer than the frames sampled from it.
OVERSAMPLE = 2
#: Deepest tissue depth a frame can show (compression and breathing pull deeper tissue up).
MAX_DEPTH = 1.3


@dataclass
class Curve:
    """A smooth random curve ``y(x) = mean + sum_k amp_k sin(2 pi freq_k x + phase_k)``."""

    mean: float
    amp: np.ndarray
    freq: np.ndarray
    phase: np.ndarray

    @classmethod
    def sample(cls, rng: np.random.Generator, mean: float, amp: float, freqs: tuple[float, float] = (0.5, 3.0),
               terms: int = 3) -> Curve:
        """Draw a curve whose wiggles have total amplitude about ``amp`` at spatial frequencies in ``freqs``."""
        return cls(mean, rng.uniform(0.3, 1.0, terms) * amp / terms ** 0.5, rng.uniform(*freqs, terms),
                   rng.uniform(0, 2 * np.pi, terms))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return self.mean + (self.amp * np.sin(2 * np.pi * self.freq * x[..., None] + self.phase)).sum(-1)


@dataclass
class Anatomy:
    """Per-video layer geometry and tissue echo levels (linear backscatter amplitude).

    Attributes:
        skin: skin thickness curve. fat: depth of the fat/gland interface. gland: gland thickness.
        fascia: depth of the pectoral fascia (smooth: the chest wall), below the retromammary fat.
        muscle: pectoralis thickness.
        levels: echo amplitude per tissue (``fat``, ``gland``, ``muscle`` ...), varied per patient.
        rib: whether ribs appear at the bottom of the field of view.
    """

    skin: Curve
    fat: Curve
    gland: Curve
    fascia: Curve
    muscle: Curve
    levels: dict[str, float]
    rib: bool


def sample_anatomy(rng: np.random.Generator) -> Anatomy:
    """Draw a patient: fatty or dense breast, layer depths, tissue echo levels."""
    fat_mean, gland_mean = rng.uniform(0.13, 0.3), rng.uniform(0.24, 0.4)
    levels = {
        "skin": rng.uniform(5.0, 7.0), "fat": rng.uniform(0.17, 0.26), "septa": rng.uniform(0.6, 1.0),
        "ligament": rng.uniform(1.0, 1.6), "gland": rng.uniform(0.95, 1.4), "muscle": rng.uniform(0.26, 0.38),
        "fascia": rng.uniform(1.3, 1.9), "chest": rng.uniform(0.3, 0.45),
    }
    return Anatomy(
        skin=Curve.sample(rng, rng.uniform(0.03, 0.045), 0.004),
        fat=Curve.sample(rng, fat_mean, rng.uniform(0.015, 0.04)),
        gland=Curve.sample(rng, gland_mean, rng.uniform(0.03, 0.07), (0.5, 2.5)),
        fascia=Curve.sample(rng, fat_mean + gland_mean + rng.uniform(0.05, 0.1), 0.03, (0.2, 1.0), 2),
        muscle=Curve.sample(rng, rng.uniform(0.12, 0.18), 0.012, (0.1, 0.8), 2),
        levels=levels,
        rib=bool(rng.random() < 0.4),
    )


def gland_band(anatomy: Anatomy, x: float) -> tuple[float, float]:
    """Depths of the top and bottom of the fibroglandular layer at lateral position ``x``."""
    top = float(anatomy.fat(x))
    return top, top + float(anatomy.gland(x))


@dataclass
class Canvas:
    """Tissue maps sampled by every frame of one video.

    Attributes:
        echo: ``(Hc, Wc)`` backscatter amplitude.
        atten: ``(Hc, Wc)`` extra attenuation (per unit depth, amplitude) beyond what TGC undoes.
        speckle: ``(4, Hc, Wc)`` real and imaginary parts of two independent complex speckle fields.
        x0: tissue ``x`` of canvas column 0. px: canvas pixels per tissue unit (both axes).
    """

    echo: np.ndarray
    atten: np.ndarray
    speckle: np.ndarray
    x0: float
    px: float


def unit_field(rng: np.random.Generator, shape: tuple[int, ...], sigma: tuple[float, ...]) -> np.ndarray:
    """Gaussian-smoothed white noise with zero mean and unit standard deviation (float32).

    Wide smoothing is done on a grid decimated so the smoothing stays about 2 cells wide, then
    interpolated back: the same kind of field at a fraction of the cost.
    """
    step = [max(1, int(sg // 2)) for sg in sigma]
    coarse = tuple(n if k == 1 else -(-n // k) + 1 for n, k in zip(shape, step))
    field = ndi.gaussian_filter(rng.standard_normal(coarse, dtype=np.float32), [sg / k for sg, k in zip(sigma, step)],
                                mode="wrap")
    if any(k > 1 for k in step):
        axes = [np.arange(n, dtype=np.float32) / k for n, k in zip(shape, step)]
        grid = np.meshgrid(*axes, indexing="ij", sparse=True)
        field = ndi.map_coordinates(field, np.broadcast_arrays(*grid), order=1, output=np.float32)
    field -= field.mean()
    return field / max(float(field.std()), 1e-8)


def render_canvas(rng: np.random.Generator, anatomy: Anatomy, x_range: tuple[float, float], size: int,
                  keep_out: tuple[float, float, float]) -> Canvas:
    """Paint the tissue canvas covering lateral range ``x_range`` for frames of ``size`` pixels.

    Args:
        rng: the video's random generator.
        anatomy: layer geometry and echo levels.
        x_range: lateral tissue range the probe sweeps over (with margins).
        size: output frame size in pixels; the canvas has ``OVERSAMPLE`` times its resolution.
        keep_out: ``(x, y, radius)`` of the lesion, which distractor cysts must not overlap.
    """
    px = float(OVERSAMPLE * size)
    h, w = int(np.ceil(MAX_DEPTH * px)), int(np.ceil((x_range[1] - x_range[0]) * px))
    y = ((np.arange(h) + 0.5) / px)[:, None]
    x = x_range[0] + (np.arange(w) + 0.5) / px
    feet = _ligament_feet(rng, x)
    bounds = _boundaries(anatomy, x, feet, _roughness(rng, x, px))
    echo = np.zeros((h, w), np.float32)
    atten = np.zeros((h, w), np.float32)
    # depth jittered by a smooth 2-D field: soft-tissue interfaces interdigitate instead of being curves
    yw = y + 0.012 * unit_field(rng, (h, w), (0.012 * px, 0.025 * px))
    _paint_skin_and_fat(rng, anatomy, echo, y, yw, bounds, px)
    _paint_gland(rng, anatomy, echo, atten, y, yw, bounds, px)
    _paint_chest(rng, anatomy, echo, atten, y, x, bounds, px)
    _paint_ligaments(rng, anatomy, echo, atten, y, x, bounds, feet)
    _paint_duct(rng, echo, y, x, bounds, keep_out)
    _paint_cyst(rng, echo, atten, y, x, bounds, keep_out)
    return Canvas(echo=echo, atten=atten, speckle=_speckle_fields(rng, (h, w), px, size), x0=x_range[0], px=px)


def _ligament_feet(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    """Where Cooper's ligaments leave the gland: rows ``(x, tent height, tent half-width)``."""
    spacing = rng.uniform(0.15, 0.3)
    feet = np.arange(x[0] + rng.uniform(0, spacing), x[-1], spacing)
    feet = feet + rng.uniform(-0.45, 0.45, feet.size) * spacing
    heights = np.minimum(rng.exponential(0.022, feet.size), 0.07)
    return np.stack([feet, heights, rng.uniform(0.04, 0.1, feet.size)], axis=1)


def _roughness(rng: np.random.Generator, x: np.ndarray, px: float) -> np.ndarray:
    """Two small-scale irregular profiles along ``x`` (gland surface and gland bottom), ``(2, Wc)``."""
    noise = ndi.gaussian_filter1d(rng.standard_normal((2, x.size)), 0.025 * px, axis=1, mode="wrap")
    return 0.012 * noise / max(float(noise.std()), 1e-8)


def _boundaries(anatomy: Anatomy, x: np.ndarray, feet: np.ndarray, rough: np.ndarray) -> dict[str, np.ndarray]:
    """Depth of each layer interface along the canvas columns, shape ``(1, Wc)`` each.

    The gland surface rises in tents where Cooper's ligaments pull it towards the skin; the gland
    bottom is irregular while the pectoral fascia below it follows the smooth chest wall.
    """
    skin = anatomy.skin(x)
    tents = np.zeros_like(x)
    for x_foot, height, half in feet:
        tents = np.maximum(tents, height * np.clip(1 - np.abs(x - x_foot) / half, 0, None) ** 1.5)
    surface = np.maximum(anatomy.fat(x) + rough[0], skin + 0.03)
    fat = np.maximum(surface - tents, skin + 0.02)
    gland = surface + np.maximum(anatomy.gland(x) + 1.5 * rough[1], 0.12)
    muscle_top = np.maximum(anatomy.fascia(x), gland + 0.015)
    muscle_bottom = muscle_top + np.maximum(anatomy.muscle(x), 0.06)
    return {k: v[None, :].astype(np.float32) for k, v in
            dict(skin=skin, fat=fat, gland=gland, muscle_top=muscle_top, muscle_bottom=muscle_bottom).items()}


def _band(y: np.ndarray, top: np.ndarray, bottom: np.ndarray, soft: float) -> np.ndarray:
    """Soft indicator of ``top <= y < bottom`` with edges ``soft`` wide."""
    return (_step((y - top) / soft) * _step((bottom - y) / soft)).astype(np.float32)


def _step(t: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(t))


def _line(y: np.ndarray, at: np.ndarray, width: float) -> np.ndarray:
    """A bright line profile of half-width ``width`` centred on depth ``at``."""
    return np.exp(-(((y - at) / width) ** 2)).astype(np.float32)


def _paint_skin_and_fat(rng: np.random.Generator, anatomy: Anatomy, echo: np.ndarray, y: np.ndarray,
                        yw: np.ndarray, b: dict[str, np.ndarray], px: float) -> None:
    """Skin line (epidermis and dermis echoes) over subcutaneous fat lobules separated by septa.

    ``yw`` is the jittered depth used for the soft-tissue interfaces.
    """
    lv = anatomy.levels
    shape = echo.shape
    skin = b["skin"]
    dermis = _band(y, 0.0, skin, 0.003) * lv["skin"] * 0.45 * np.exp(0.3 * unit_field(rng, shape, (1.5, 4)))
    echo += dermis + lv["skin"] * (_line(y, 0.006, 0.004) + 0.8 * _line(y, skin, 0.004))
    # lobules: cells bounded by the zero lines of a smooth field, flattened like real fat lobules
    cells = unit_field(rng, shape, (0.018 * px, 0.045 * px))
    septa = np.exp(-((cells / 0.13) ** 2))
    fat = lv["fat"] * np.exp(0.25 * unit_field(rng, shape, (0.01 * px, 0.02 * px))) * (0.75 + 0.25 * np.tanh(cells))
    echo += _band(yw, skin, b["fat"], 0.004) * (fat + lv["septa"] * septa)


def _paint_gland(rng: np.random.Generator, anatomy: Anatomy, echo: np.ndarray, atten: np.ndarray,
                 y: np.ndarray, yw: np.ndarray, b: dict[str, np.ndarray], px: float) -> None:
    """Heterogeneous fibroglandular layer with fat islands and lamellar strands, over retromammary fat."""
    lv = anatomy.levels
    shape = echo.shape
    grain = np.exp(0.35 * unit_field(rng, shape, (0.006 * px, 0.02 * px)))
    islands = _step((unit_field(rng, shape, (0.02 * px, 0.045 * px)) - 0.6) / 0.25)
    strands = np.exp(-((unit_field(rng, shape, (0.01 * px, 0.06 * px)) / 0.15) ** 2))
    tissue = lv["gland"] * grain * (1 - islands) + lv["fat"] * 1.1 * islands + 0.6 * lv["gland"] * strands
    band = _band(yw, b["fat"], b["gland"], 0.006)
    echo += band * tissue
    atten += band * 0.5
    retro = _step((yw - b["gland"]) / 0.006) * _step((b["muscle_top"] - y) / 0.004)
    echo += retro * lv["fat"] * np.exp(0.25 * unit_field(rng, shape, (0.008 * px, 0.03 * px)))


def _paint_chest(rng: np.random.Generator, anatomy: Anatomy, echo: np.ndarray, atten: np.ndarray,
                 y: np.ndarray, x: np.ndarray, b: dict[str, np.ndarray], px: float) -> None:
    """Pectoral fascia, striated pectoralis muscle, chest wall with ribs and the pleural line."""
    lv = anatomy.levels
    shape = echo.shape
    top, bottom = b["muscle_top"], b["muscle_bottom"]
    slope = rng.uniform(-0.12, 0.12)
    period = rng.uniform(0.014, 0.024)
    wobble = 1.2 * unit_field(rng, shape, (0.015 * px, 0.06 * px))
    phase = 2 * np.pi * (y - top - slope * (x[None, :] - x[0])) / period + wobble
    fibres = np.clip(np.cos(phase), 0, None) ** 4  # fibre bundles, broken into segments below
    fibres *= np.clip(0.5 + unit_field(rng, shape, (0.006 * px, 0.04 * px)), 0.15, 1.0)
    muscle = lv["muscle"] * np.exp(0.2 * unit_field(rng, shape, (0.004 * px, 0.02 * px))) * (0.75 + 1.0 * fibres)
    echo += _band(y, top, bottom, 0.004) * muscle
    echo += lv["fascia"] * (_line(y, top, 0.004) + 0.8 * _line(y, bottom, 0.004))
    chest = _band(y, bottom, 10.0, 0.004)
    echo += chest * lv["chest"] * np.exp(0.3 * unit_field(rng, shape, (0.01 * px, 0.03 * px)))
    atten += _band(y, top, 10.0, 0.004) * 0.4
    pleura = bottom + rng.uniform(0.07, 0.1)
    echo += lv["skin"] * 0.8 * _line(y, pleura, 0.005)
    atten += _band(y, pleura, 10.0, 0.004) * 12.0  # aerated lung: nothing returns from below
    if anatomy.rib:
        _paint_ribs(rng, anatomy, echo, atten, y, x, bottom, pleura)


def _paint_ribs(rng: np.random.Generator, anatomy: Anatomy, echo: np.ndarray, atten: np.ndarray,
                y: np.ndarray, x: np.ndarray, bottom: np.ndarray, pleura: np.ndarray) -> None:
    """Rib cross-sections under the muscle.

    Bone: a bright curved cortex casting a full acoustic shadow. Costal cartilage: a hypoechoic
    oval with a faint rim and partial shadow.
    """
    bone = rng.random() < 0.6
    spacing = rng.uniform(0.45, 0.7)
    for xc in np.arange(x[0] + rng.uniform(0, spacing), x[-1] + spacing, spacing):
        col = int(np.clip(np.searchsorted(x, xc), 0, x.size - 1))
        yc = float(bottom[0, col]) + rng.uniform(0.035, 0.06)
        rx, ry = rng.uniform(0.07, 0.1), rng.uniform(0.03, 0.045)
        r = np.sqrt(((x[None, :] - xc) / rx) ** 2 + ((y - yc) / ry) ** 2)
        cortex = (np.exp(-(((r - 1) * ry / 0.005) ** 2)) * (y < yc)).astype(np.float32)
        inside = (r < 1).astype(np.float32)
        echo *= 1 - (0.7 if bone else 0.5) * inside
        echo += anatomy.levels["skin"] * (0.9 if bone else 0.25) * cortex
        atten += (40.0 if bone else rng.uniform(4, 8)) * inside


def _paint_ligaments(rng: np.random.Generator, anatomy: Anatomy, echo: np.ndarray, atten: np.ndarray,
                     y: np.ndarray, x: np.ndarray, b: dict[str, np.ndarray], feet: np.ndarray) -> None:
    """Cooper's ligaments: thin bright curved lines rising obliquely from the gland tents to the skin.

    Neighbouring ligaments lean the same way, as the breast's suspensory network does. Some cast
    a thin refraction shadow, a dark streak that is not a lesion.
    """
    lean_all = rng.uniform(-0.8, 0.8)
    for x_foot, _, _ in feet:
        col = int(np.clip(np.searchsorted(x, x_foot), 0, x.size - 1))
        foot, head = float(b["fat"][0, col]), float(b["skin"][0, col])
        lean, bend = lean_all + rng.uniform(-0.4, 0.4), rng.uniform(-2.5, 2.5)
        rise = np.clip(foot - y, 0, None)
        path = x_foot + lean * rise + bend * rise ** 2
        fade = np.clip(rise / 0.02, 0, 1) * (rng.uniform(0.4, 1.0) + 0.3 * np.cos(rise * rng.uniform(20, 60)))
        line = np.exp(-(((x[None, :] - path) / rng.uniform(0.0025, 0.004)) ** 2)) * ((y > head) & (y < foot)) * fade
        echo += (anatomy.levels["ligament"] * line).astype(np.float32)
        if rng.random() < 0.3:
            atten += (rng.uniform(10, 25) * line).astype(np.float32)


def _paint_duct(rng: np.random.Generator, echo: np.ndarray, y: np.ndarray, x: np.ndarray,
                b: dict[str, np.ndarray], keep_out: tuple[float, float, float]) -> None:
    """A lactiferous duct: a dark tube with bright walls running roughly parallel to the skin."""
    if rng.random() < 0.25:
        return
    xc = _away_from(rng, x, keep_out, 0.25)
    col = int(np.clip(np.searchsorted(x, xc), 0, x.size - 1))
    depth = float(b["fat"][0, col] + rng.uniform(0.2, 0.6) * (b["gland"][0, col] - b["fat"][0, col]))
    length, radius = rng.uniform(0.3, 0.6), rng.uniform(0.01, 0.02)
    centre = depth + rng.uniform(-0.1, 0.1) * (x - xc) + 0.01 * np.sin(2 * np.pi * rng.uniform(1, 3) * x)
    taper = np.clip(1 - np.abs(x - xc) / (length / 2), 0, 1) ** 0.5
    r = np.abs(y - centre[None, :]) / np.maximum(radius * taper[None, :], 1e-4)
    lumen = _step((1 - r) / 0.15) * (taper[None, :] > 0)
    wall = np.exp(-(((r - 1.2) / 0.25) ** 2)) * (taper[None, :] > 0)
    echo *= (1 - 0.9 * lumen).astype(np.float32)
    echo += (1.2 * wall).astype(np.float32)


def _paint_cyst(rng: np.random.Generator, echo: np.ndarray, atten: np.ndarray, y: np.ndarray, x: np.ndarray,
                b: dict[str, np.ndarray], keep_out: tuple[float, float, float]) -> None:
    """A small anechoic cyst-like distractor with posterior enhancement, away from the lesion."""
    if rng.random() < 0.35:
        return
    xc = _away_from(rng, x, keep_out, 0.08)
    col = int(np.clip(np.searchsorted(x, xc), 0, x.size - 1))
    yc = float(rng.uniform(b["fat"][0, col] - 0.05, b["gland"][0, col] - 0.04))
    rx = rng.uniform(0.025, 0.05)
    r = np.sqrt(((x[None, :] - xc) / rx) ** 2 + ((y - yc) / (rx * rng.uniform(0.6, 0.9))) ** 2)
    inside = _step((1 - r) / 0.08)
    echo *= (1 - 0.93 * inside).astype(np.float32)
    atten -= (4.0 * inside).astype(np.float32)


def _away_from(rng: np.random.Generator, x: np.ndarray, keep_out: tuple[float, float, float], r: float) -> float:
    """A lateral position in the canvas at least ``r`` plus the lesion radius from the lesion centre."""
    for _ in range(20):
        xc = float(rng.uniform(x[0] + 0.1, x[-1] - 0.1))
        if abs(xc - keep_out[0]) > keep_out[2] + r:
            return xc
    return float(keep_out[0] + np.sign(rng.standard_normal()) * (keep_out[2] + r + 0.1))


def speckle_psf(size: int) -> tuple[float, float]:
    """Speckle point-spread sigmas ``(axial, lateral)`` in pixels of ``size``-pixel frames.

    About 0.19 x 0.48 mm at 40 mm depth (a 10-12 MHz linear array: lateral resolution 2-3 times
    coarser than axial), never below what the pixel grid can show.
    """
    return max(0.0047 * size, 0.6), max(0.012 * size, 1.3)


def _speckle_fields(rng: np.random.Generator, shape: tuple[int, int], px: float, size: int) -> np.ndarray:
    """Two complex speckle fields (as 4 real planes) fixed in the tissue.

    Complex Gaussian scatterer sums blurred by the point-spread function: narrow axially,
    wider laterally, as for a linear array. Their modulus is Rayleigh distributed.
    """
    sigma = tuple(s * px / size for s in speckle_psf(size))
    planes = [unit_field(rng, shape, sigma) / np.sqrt(2.0) for _ in range(4)]
    return np.stack(planes).astype(np.float32)
