"""Read and write ultrasound videos and mask videos in the formats users bring.

Every format gives the same in-memory video: frames ``(T, H, W)`` float32 in [0, 1]
(RGB is converted to grayscale) and masks ``(T, H, W)`` uint8 in {0, 1}. MONAI's
``ImageReader``s treat a NIfTI 2D+t file as a 3D volume and know nothing of MP4 or
frame folders, so the format logic lives here and ``readers.VideoReader`` exposes it
to ``LoadImaged``.

Formats (chosen by suffix; a directory is a frame folder):
    * NIfTI ``.nii``/``.nii.gz``: array ``(W, H, T)`` on disk, time on the third axis so
      3D Slicer and MONAI Label show frames as slices; spacing from the header zooms.
    * DICOM ``.dcm``: a multi-frame cine read with SimpleITK; spacing from the header.
    * MP4/AVI ``.mp4``/``.avi``/``.mov``: decoded with the ffmpeg shipped by imageio-ffmpeg.
    * frame folder: ``<video>/<frame>.png|.jpg`` sorted by the number in the file name.

Writers are atomic: a file appears complete under its final name or not at all.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from stbv_monai.errors import InputError

__all__ = [
    "Video",
    "video_format",
    "video_id",
    "read_video",
    "read_mask",
    "write_video",
    "write_mask",
    "atomic_path",
    "count_frames",
    "MIN_FRAMES",
]

logger = logging.getLogger(__name__)

MIN_FRAMES = 3
NIFTI_SUFFIXES = (".nii", ".nii.gz")
DICOM_SUFFIXES = (".dcm", ".dicom")
MOVIE_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv")
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
LOSSY_SUFFIXES = MOVIE_SUFFIXES + (".jpg", ".jpeg")


@dataclass
class Video:
    """A decoded video.

    Attributes:
        frames: ``(T, H, W)`` float32 in [0, 1].
        spacing: pixel spacing ``(row, column)`` in mm, or ``None`` when the file has none.
        fps: frame rate when the file records one.
        source: where it came from (for messages).
    """

    frames: np.ndarray
    spacing: tuple[float, float] | None = None
    fps: float | None = None
    source: str = ""


def video_format(path: str | os.PathLike) -> str:
    """Name the format family of ``path``: ``nifti``, ``dicom``, ``movie`` or ``frames``."""
    p = Path(path)
    name = p.name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if name.endswith(DICOM_SUFFIXES):
        return "dicom"
    if name.endswith(MOVIE_SUFFIXES):
        return "movie"
    if p.is_dir() or p.suffix == "":
        return "frames"
    raise InputError(path, f"unsupported video format '{p.suffix}' (use NIfTI, DICOM, MP4/AVI or a folder of PNG/JPG frames)")


def video_id(path: str | os.PathLike) -> str:
    """A file-name-safe id for a video: its file or folder name without video suffixes."""
    name = Path(path).name
    for suffix in NIFTI_SUFFIXES[::-1] + DICOM_SUFFIXES + MOVIE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


# ----------------------------------------------------------------------------- reading


def read_video(path: str | os.PathLike) -> Video:
    """Read a video of any supported format as ``(T, H, W)`` float32 in [0, 1].

    Raises:
        InputError: missing, unreadable or truncated file, or fewer than 3 frames.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found")
    reader = _READERS[video_format(path)]
    try:
        raw, spacing, fps = reader(path)
    except InputError:
        raise
    except Exception as exc:  # library errors become one line naming the file
        raise InputError(path, f"cannot read video ({type(exc).__name__}: {_first_line(exc)})") from exc
    frames = _to_unit_gray(raw, path)
    _check_frames(frames, path)
    return Video(frames=frames, spacing=spacing, fps=fps, source=str(path))


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Read a mask video as ``(T, H, W)`` uint8 in {0, 1}; accepts {0, 1} or {0, 255} values.

    Raises:
        InputError: unreadable file, lossy format, or values other than {0, 1} / {0, 255}.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found")
    fmt = video_format(path)
    if fmt == "movie" or (fmt == "frames" and _frame_files(path)[0].suffix.lower() in LOSSY_SUFFIXES):
        raise InputError(path, "masks must be stored losslessly (NIfTI, DICOM or PNG frames), not as MP4/AVI/JPG")
    try:
        raw, _, _ = _READERS[fmt](path)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(path, f"cannot read mask ({type(exc).__name__}: {_first_line(exc)})") from exc
    return _to_binary(raw, path)


def count_frames(path: str | os.PathLike) -> int:
    """Number of frames of a video, from the header alone where the format allows it."""
    path = Path(path)
    if video_format(path) == "nifti":
        import nibabel as nib

        try:
            return int(nib.load(str(path)).shape[2])
        except Exception as exc:
            raise InputError(path, f"cannot read NIfTI header ({_first_line(exc)})") from exc
    if video_format(path) == "frames":
        return len(_frame_files(path))
    return int(read_video(path).frames.shape[0])


def _read_nifti(path: Path) -> tuple[np.ndarray, tuple[float, float] | None, float | None]:
    import nibabel as nib

    img = nib.load(str(path))
    data = np.asanyarray(img.dataobj)
    if data.ndim == 4 and data.shape[2] == 1:  # (W, H, 1, T) as some tools write 2D+t
        data = data[:, :, 0]
    if data.ndim == 4 and data.shape[3] in (3, 4):  # (W, H, T, RGB)
        data = np.moveaxis(data, 3, 0)[:3].transpose(1, 2, 3, 0)
        arr = data.transpose(2, 1, 0, 3)
    elif data.ndim == 3:
        arr = data.transpose(2, 1, 0)
    else:
        raise InputError(path, f"expected a 2D+t volume (W, H, T), got array shape {tuple(data.shape)}")
    zooms = img.header.get_zooms()
    spacing = (float(zooms[1]), float(zooms[0])) if len(zooms) >= 2 else None
    return arr, spacing, _fps_from_text(str(img.header.get("descrip", b""), "utf-8", "ignore"))


def _read_dicom(path: Path) -> tuple[np.ndarray, tuple[float, float] | None, float | None]:
    import SimpleITK as sitk

    img = sitk.ReadImage(str(path))
    arr = sitk.GetArrayFromImage(img)  # (T, H, W) or (T, H, W, C)
    if arr.ndim == 2:
        raise InputError(path, "DICOM holds a single frame, not a cine loop")
    sx, sy = img.GetSpacing()[:2]
    return arr, (float(sy), float(sx)), None


def _read_movie(path: Path) -> tuple[np.ndarray, None, float | None]:
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="gray", bpp=1)
    meta = next(gen)
    w, h = meta["size"]
    frames = [np.frombuffer(buf, dtype=np.uint8).reshape(h, w) for buf in gen]
    if not frames:
        raise InputError(path, "no decodable frames (truncated or empty movie)")
    return np.stack(frames), None, float(meta.get("fps") or 0) or None


def _read_frames(path: Path) -> tuple[np.ndarray, None, None]:
    import imageio.v3 as iio

    files = _frame_files(path)
    frames = [iio.imread(f) for f in files]
    shapes = {f.shape[:2] for f in frames}
    if len(shapes) != 1:
        raise InputError(path, f"frames differ in size: {sorted(shapes)}")
    return np.stack([_drop_alpha(f) for f in frames]), None, None


_READERS: dict[str, Callable[[Path], tuple]] = {
    "nifti": _read_nifti,
    "dicom": _read_dicom,
    "movie": _read_movie,
    "frames": _read_frames,
}


def _frame_files(folder: Path) -> list[Path]:
    """Image files of a frame folder sorted by the last number in their names."""
    if not folder.is_dir():
        raise InputError(folder, "frame folder not found")
    files = [f for f in folder.iterdir() if f.suffix.lower() in FRAME_SUFFIXES]
    if not files:
        raise InputError(folder, f"no frame images ({', '.join(FRAME_SUFFIXES)}) in folder")

    def key(f: Path) -> tuple[int, str]:
        nums = re.findall(r"\d+", f.stem)
        return (int(nums[-1]) if nums else -1, f.name)

    return sorted(files, key=key)


def _drop_alpha(img: np.ndarray) -> np.ndarray:
    return img[..., :3] if img.ndim == 3 and img.shape[-1] == 4 else img


def _to_gray(arr: np.ndarray) -> np.ndarray:
    """``(T, H, W[, C])`` → ``(T, H, W)``; RGB by ITU-R 601 luma, as ffmpeg and PIL do."""
    if arr.ndim == 4:
        if arr.shape[-1] == 1:
            return arr[..., 0]
        rgb = arr[..., :3].astype(np.float32)
        return rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return arr


def _to_unit_gray(arr: np.ndarray, path: Path) -> np.ndarray:
    """Scale to float32 [0, 1]: integers by their type's range, floats kept if in [0, 1]."""
    dtype = arr.dtype
    arr = _to_gray(np.asarray(arr))
    if arr.ndim != 3:
        raise InputError(path, f"expected frames (T, H, W), got shape {tuple(arr.shape)}")
    if np.issubdtype(dtype, np.integer) and dtype != np.uint8:
        top = float(arr.max()) if arr.size else 1.0
        out = arr.astype(np.float32) / (top if top > 0 else 1.0)
    elif np.issubdtype(dtype, np.integer):
        out = arr.astype(np.float32) / 255.0
    else:  # floats: [0, 1] kept, [0, 255] scaled, anything else min-max normalised
        out = arr.astype(np.float32)
        if not np.isfinite(out).all():
            raise InputError(path, "frames contain NaN or infinite values")
        lo, hi = float(out.min()), float(out.max())
        if lo < 0.0 or hi > 255.0:
            out = (out - lo) / max(hi - lo, 1e-12)
        elif hi > 1.0:
            out = out / 255.0
    return np.ascontiguousarray(np.clip(out, 0.0, 1.0), dtype=np.float32)


def _to_binary(arr: np.ndarray, path: Path) -> np.ndarray:
    arr = _to_gray(np.asarray(arr)) if np.asarray(arr).ndim == 4 else np.asarray(arr)
    if arr.ndim != 3:
        raise InputError(path, f"expected a mask video (T, H, W), got shape {tuple(arr.shape)}")
    values = np.unique(arr)
    if np.isin(values, (0, 1)).all():
        return arr.astype(np.uint8)
    if np.isin(values, (0, 255)).all():
        return (arr == 255).astype(np.uint8)
    shown = ", ".join(f"{v:g}" for v in values[:6]) + (", ..." if values.size > 6 else "")
    raise InputError(path, f"mask values must be {{0, 1}} or {{0, 255}}, found {{{shown}}}")


def _check_frames(frames: np.ndarray, path: Path) -> None:
    if frames.shape[0] < MIN_FRAMES:
        raise InputError(path, f"video has {frames.shape[0]} frame(s); at least {MIN_FRAMES} are needed")


def _fps_from_text(text: str) -> float | None:
    m = re.search(r"fps=([0-9.]+)", text)
    return float(m.group(1)) if m else None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else "no details"


# ----------------------------------------------------------------------------- writing


def atomic_path(final: str | os.PathLike) -> "_AtomicContext":
    """Context manager yielding a temporary sibling path, renamed onto ``final`` on success.

    A failure leaves the previous ``final`` (if any) untouched and removes the temporary.
    Works for files and for folders.
    """
    return _AtomicContext(Path(final))


class _AtomicContext:
    def __init__(self, final: Path) -> None:
        self.final = final

    def __enter__(self) -> Path:
        self.final.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".tmp-", suffix="-" + self.final.name, dir=self.final.parent)
        os.close(fd)
        os.unlink(name)
        self.tmp = Path(name)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            _remove(self.tmp)
            return
        if self.tmp.is_dir() and self.final.exists():  # folders cannot be os.replace'd onto
            old = self.final.with_name(f".old-{self.final.name}")
            _remove(old)
            os.replace(self.final, old)
            os.replace(self.tmp, self.final)
            _remove(old)
        else:
            os.replace(self.tmp, self.final)


def _remove(p: Path) -> None:
    if p.is_dir():
        shutil.rmtree(p, ignore_errors=True)
    elif p.exists():
        p.unlink()


def write_video(path: str | os.PathLike, frames: np.ndarray, spacing: tuple[float, float] | None = None,
                fps: float | None = None) -> Path:
    """Write ``(T, H, W)`` frames (float in [0, 1] or uint8) in the format of ``path``'s suffix.

    Images are stored as 8-bit, like B-mode scanners do. A path without suffix is a frame folder.
    """
    frames = np.asarray(frames)
    if frames.ndim != 3:
        raise InputError(path, f"frames must be (T, H, W), got shape {tuple(frames.shape)}")
    data = frames if frames.dtype == np.uint8 else np.round(np.clip(frames, 0, 1) * 255).astype(np.uint8)
    return _write(Path(path), data, spacing, fps)


def write_mask(path: str | os.PathLike, mask: np.ndarray, spacing: tuple[float, float] | None = None) -> Path:
    """Write a ``(T, H, W)`` binary mask video; PNG frame folders store 0/255 so people can view them."""
    path = Path(path)
    mask = (np.asarray(mask) > 0).astype(np.uint8)
    if mask.ndim != 3:
        raise InputError(path, f"mask must be (T, H, W), got shape {tuple(mask.shape)}")
    if video_format(path) == "movie":
        raise InputError(path, "masks must be stored losslessly (NIfTI, DICOM or PNG frames)")
    return _write(path, mask * 255 if video_format(path) == "frames" else mask, spacing, None)


def _write(path: Path, data: np.ndarray, spacing, fps) -> Path:
    writer = _WRITERS[video_format(path)]
    with atomic_path(path) as tmp:
        writer(tmp, data, spacing, fps)
    return path


def _write_nifti(tmp: Path, data: np.ndarray, spacing, fps) -> None:
    import nibabel as nib

    sy, sx = spacing or (1.0, 1.0)
    img = nib.Nifti1Image(np.ascontiguousarray(data.transpose(2, 1, 0)), np.diag([sx, sy, 1.0, 1.0]))
    img.header.set_xyzt_units("mm", "sec")
    if fps:
        img.header["descrip"] = f"fps={fps:g}".encode()
    # nibabel picks compression from the suffix; the temp name keeps the final suffix
    nib.save(img, str(tmp))


def _write_dicom(tmp: Path, data: np.ndarray, spacing, fps) -> None:
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(data)
    sy, sx = spacing or (1.0, 1.0)
    img.SetSpacing((float(sx), float(sy), 1.0))
    writer = sitk.ImageFileWriter()
    writer.SetFileName(str(tmp))
    writer.SetImageIO("GDCMImageIO")
    writer.Execute(img)


def _write_movie(tmp: Path, data: np.ndarray, spacing, fps) -> None:
    import imageio_ffmpeg

    t, h, w = data.shape
    if h % 2 or w % 2:  # yuv420p needs even sizes; pad by edge replication
        data = np.pad(data, ((0, 0), (0, h % 2), (0, w % 2)), mode="edge")
    gen = imageio_ffmpeg.write_frames(
        str(tmp), (data.shape[2], data.shape[1]), pix_fmt_in="gray", fps=fps or 25,
        codec="libx264", quality=None, output_params=["-crf", "12"], macro_block_size=1,
        ffmpeg_log_level="error",
    )
    gen.send(None)
    for frame in data:
        gen.send(np.ascontiguousarray(frame))
    gen.close()


def _write_frames(tmp: Path, data: np.ndarray, spacing, fps) -> None:
    import imageio.v3 as iio

    tmp.mkdir(parents=True)
    digits = max(5, len(str(len(data))))
    for t, frame in enumerate(data):
        iio.imwrite(tmp / f"{t:0{digits}d}.png", frame)


_WRITERS: dict[str, Callable[..., None]] = {
    "nifti": _write_nifti,
    "dicom": _write_dicom,
    "movie": _write_movie,
    "frames": _write_frames,
}
