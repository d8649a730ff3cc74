"""Still lesion images (e.g. BUSI) as one-frame videos, for the stage-0 pretraining on static images.

STCN pretrains on still images turned into pseudo-videos; here a still becomes a 1-frame video
with the same keys as :class:`~stbv_monai.data.dataset.LoadVideoPaird` writes, so the existing
clip sampler (``RandSampleClipd(mode="bootstrap")`` repeats the labelled frame) and per-frame
augmentation make the clips. Sources:

* a folder in the BUSI layout: ``<root>/<class>/<name>.png`` with ``<name>_mask.png`` and extra
  masks ``<name>_mask_1.png``... merged by union; ``normal/`` images have empty masks;
* a datalist JSON ``{"training": [{"image": ..., "label": path or [paths]}]}``, paths relative
  to the JSON's folder.

Formats: PNG, JPG, BMP, 2D NIfTI (on disk ``(W, H)`` like the project's videos, so a file
converted by ITK/Slicer reads as its PNG does) and single-frame DICOM (SimpleITK). Masks must be
lossless (not JPG). Pairing is checked when listing; sizes and values when reading.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import CacheDataset
from monai.transforms import Compose, MapTransform, Resize
from monai.utils import convert_to_tensor

from stbv_monai.data.dataset import video_dataset
from stbv_monai.data.io import DICOM_SUFFIXES, NIFTI_SUFFIXES, _drop_alpha, _first_line, _to_binary, _to_unit_gray
from stbv_monai.errors import InputError

__all__ = ["STILL_SUFFIXES", "LoadStillPaird", "load_still_entries", "read_still", "read_still_mask",
           "still_dataset", "still_suffix"]

PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
STILL_SUFFIXES = PICTURE_SUFFIXES + NIFTI_SUFFIXES + DICOM_SUFFIXES
LOSSY_SUFFIXES = (".jpg", ".jpeg")
_MASK_STEM = re.compile(r"^(?P<name>.+)_mask(?:_(?P<k>\d+))?$", re.IGNORECASE)


# ----------------------------------------------------------------------------- listing


def load_still_entries(source: str | os.PathLike) -> list[dict[str, Any]]:
    """List a still-image dataset: a BUSI-layout folder or a datalist JSON file.

    Returns:
        Entries ``{"image": path, "label": [mask paths], "name": str}`` with absolute paths,
        sorted by name (numbers in names compare as numbers: ``x (2)`` before ``x (10)``).

    Raises:
        InputError: missing source, unpaired image or mask, unsupported file, bad datalist, no images.
    """
    path = Path(source)
    if not path.exists():
        raise InputError(path, "still-image dataset not found (a BUSI-layout folder or a datalist .json)")
    if path.is_dir():
        entries = _folder_entries(path)
    elif path.name.lower().endswith(".json"):
        entries = _datalist_entries(path)
    else:
        raise InputError(path, "a still-image dataset is a BUSI-layout folder or a datalist .json file")
    if not entries:
        raise InputError(path, f"no images found (expected <root>/<class>/<name>{{{','.join(PICTURE_SUFFIXES)}}} "
                               "with <name>_mask.png, or a datalist with a non-empty 'training' list)")
    return sorted(entries, key=lambda e: _natural_key(e["name"]))


def _natural_key(text: str) -> list[Any]:
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text.lower())]


def still_suffix(path: str | os.PathLike) -> str | None:
    """The supported still-image suffix of ``path`` (lower case, ``.nii.gz`` whole), or ``None``."""
    name = Path(path).name.lower()
    return next((s for s in sorted(STILL_SUFFIXES, key=len, reverse=True) if name.endswith(s)), None)


def _supported(path: Path) -> str:
    suffix = still_suffix(path)
    if suffix is None:
        raise InputError(path, f"unsupported still-image format (use {', '.join(STILL_SUFFIXES)})")
    return suffix


def _check_mask_file(path: Path) -> None:
    if _supported(path) in LOSSY_SUFFIXES:
        raise InputError(path, "masks must be stored losslessly (PNG, BMP, NIfTI or DICOM), not as JPG")


def _folder_entries(root: Path) -> list[dict[str, Any]]:
    """Entries of a BUSI-layout folder; files directly under ``root`` (README, manifest) are ignored."""
    entries: list[dict[str, Any]] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        entries.extend(_class_entries(root, folder))
    return entries


def _class_entries(root: Path, folder: Path) -> list[dict[str, Any]]:
    """Pair the images of one class folder with their masks (``<name>_mask[_k].*``)."""
    images: dict[str, Path] = {}
    masks: dict[str, list[tuple[int, Path]]] = {}
    for f in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        stem = f.name[: -len(_supported(f))]
        match = _MASK_STEM.match(stem)
        if match:
            _check_mask_file(f)
            masks.setdefault(match["name"], []).append((int(match["k"] or 0), f))
        elif stem in images:
            raise InputError(f, f"two images named {stem!r} in {folder} ({images[stem].name}); keep one")
        else:
            images[stem] = f
    for name, found in masks.items():
        if name not in images:
            raise InputError(found[0][1], f"mask without an image: no {name}.<png|jpg|bmp|...> in {folder}")
    entries = []
    for stem, image in images.items():
        if stem not in masks:
            raise InputError(image, f"image without a mask: expected {stem}_mask.png next to it")
        labels = [str(p.absolute()) for _, p in sorted(masks[stem], key=lambda kp: (kp[0], kp[1].name))]
        entries.append({"image": str(image.absolute()), "label": labels,
                        "name": image.relative_to(root).as_posix()[: -len(still_suffix(image))]})
    return entries


def _datalist_entries(path: Path) -> list[dict[str, Any]]:
    """Entries of a datalist JSON's ``training`` list, paths resolved against its folder."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(path, f"not a readable JSON datalist ({_first_line(exc)})") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("training"), list):
        raise InputError(path, "datalist has no 'training' list of {\"image\": ..., \"label\": ...} entries")
    entries, seen = [], {}
    for i, item in enumerate(raw["training"]):
        entry = _datalist_entry(path, item, f"{path} [training][{i}]")
        if entry["image"] in seen:
            raise InputError(f"{path} [training][{i}]", f"image {entry['image']} is already listed at "
                                                        f"[training][{seen[entry['image']]}]")
        seen[entry["image"]] = i
        entries.append(entry)
    return entries


def _datalist_entry(path: Path, item: Any, where: str) -> dict[str, Any]:
    """One checked datalist entry: keys present, files existing and of supported formats."""
    if not isinstance(item, dict) or "image" not in item or "label" not in item:
        raise InputError(where, f"entry must be an object with 'image' and 'label', got {item!r}"[:300])
    labels = item["label"] if isinstance(item["label"], list) else [item["label"]]
    if not isinstance(item["image"], str) or not labels or not all(isinstance(p, str) for p in labels):
        raise InputError(where, "'image' must be a path and 'label' a path or a non-empty list of paths")
    base = path.parent.absolute()
    image, *masks = (Path(os.path.normpath(base / p)) for p in [item["image"], *labels])
    for f in [image, *masks]:
        if not f.is_file():
            raise InputError(f, f"file not found (listed in {where})")
    _supported(image)
    for m in masks:
        _check_mask_file(m)
    name = Path(os.path.relpath(image, base)).as_posix()[: -len(still_suffix(image))]
    return {"image": str(image), "label": [str(m) for m in masks], "name": name}


# ----------------------------------------------------------------------------- reading


def _read_raw(path: Path) -> np.ndarray:
    """Pixels of a still as stored: ``(H, W)`` or ``(H, W, C)``."""
    suffix = _supported(path)
    if suffix in NIFTI_SUFFIXES:
        return _read_nifti_still(path)
    if suffix in DICOM_SUFFIXES:
        return _read_dicom_still(path)
    import imageio.v3 as iio

    arr = np.asarray(iio.imread(path))
    if arr.ndim == 3 and arr.shape[-1] == 2:  # grey + alpha
        return arr[..., 0]
    return _drop_alpha(arr)


def _read_nifti_still(path: Path) -> np.ndarray:
    import nibabel as nib

    data = np.asanyarray(nib.load(str(path)).dataobj)
    while data.ndim > 2 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 2:
        raise InputError(path, f"expected a 2D image (W, H) or (W, H, 1), got array shape {tuple(data.shape)}")
    return data.T  # (W, H) on disk, as the project's videos store frames


def _read_dicom_still(path: Path) -> np.ndarray:
    import SimpleITK as sitk

    img = sitk.ReadImage(str(path))
    arr = sitk.GetArrayFromImage(img)  # (H, W), (1, H, W), or with a trailing channel axis
    vector = img.GetNumberOfComponentsPerPixel() > 1
    if arr.ndim == (4 if vector else 3):
        if arr.shape[0] != 1:
            raise InputError(path, f"DICOM holds {arr.shape[0]} frames; a still image needs one (use it as a video)")
        arr = arr[0]
    return _drop_alpha(arr)


def _read_checked(path: Path, what: str) -> np.ndarray:
    """:func:`_read_raw` with library errors turned into one line naming the file."""
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        return _read_raw(path)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(path, f"cannot read {what} ({type(exc).__name__}: {_first_line(exc)})") from exc


def read_still(path: str | os.PathLike) -> np.ndarray:
    """Read a still image as ``(H, W)`` float32 in [0, 1] (RGB to grey by ITU-R 601 luma).

    Raises:
        InputError: missing, unreadable or unsupported file, not a 2D image, NaN pixels.
    """
    path = Path(path)
    raw = _read_checked(path, "image")
    if raw.ndim not in (2, 3):
        raise InputError(path, f"expected a 2D image, got array shape {tuple(raw.shape)}")
    return _to_unit_gray(raw[None], path)[0]


def read_still_mask(paths: str | os.PathLike | Sequence[str | os.PathLike], shape: Sequence[int]) -> np.ndarray:
    """Read masks and merge them by union: ``(H, W)`` uint8 in {0, 1}.

    Values {0, 1} or {0, 255} are accepted; an RGB mask counts a pixel painted in any channel.

    Raises:
        InputError: unreadable file, other values, or a size different from the image's ``shape``.
    """
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    union = np.zeros(tuple(shape), np.uint8)
    for p in map(Path, paths):
        raw = _read_checked(p, "mask")
        if raw.ndim == 3:
            raw = raw.max(axis=-1)
        if raw.shape != union.shape:
            raise InputError(p, f"mask size {'x'.join(map(str, raw.shape))} differs from the image's "
                                f"{'x'.join(map(str, union.shape))} (H x W)")
        np.maximum(union, _to_binary(raw[None], p)[0], out=union)
    return union


# ----------------------------------------------------------------------------- transforms and datasets


class LoadStillPaird(MapTransform):
    """Load a still entry as a 1-frame video, with exactly the keys :class:`LoadVideoPaird` writes.

    Reads ``image`` (path) and ``label`` (path or list, merged by union); writes ``image`` (1, H, W)
    float32 tensor, ``label`` (1, H, W) float32 {0, 1}, ``labelled_frames=[0]``, ``spacing=(1.0, 1.0)``,
    ``spacing_known=False``, ``image_path`` and ``label_path`` (the first mask: a real file, as
    for a video; read errors name the mask at fault themselves).

    Args:
        keys: the image and label keys.
        max_side: images whose longer side exceeds it are shrunk to it (area averaging for the
            image, ``nearest-exact`` for the mask), so caching a real dataset stays small.
    """

    def __init__(self, keys: KeysCollection = ("image", "label"), max_side: int | None = None) -> None:
        super().__init__(keys)
        if max_side is not None and (isinstance(max_side, bool) or int(max_side) < 1):
            raise ValueError(f"max_side must be a positive integer or None, got {max_side!r}")
        self.image_key, self.label_key = self.keys[0], self.keys[1]
        self.max_side = None if max_side is None else int(max_side)
        if self.max_side is not None:
            self.shrink_image = Resize(self.max_side, size_mode="longest", mode="area")
            self.shrink_label = Resize(self.max_side, size_mode="longest", mode="nearest-exact")

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        labels = d[self.label_key] if isinstance(d[self.label_key], (list, tuple)) else [d[self.label_key]]
        image = read_still(d[self.image_key])
        mask = read_still_mask(labels, image.shape)
        image_t, label_t = self._shrink(image[None], mask[None].astype(np.float32))
        d.update({self.image_key: image_t, self.label_key: label_t, "labelled_frames": [0], "spacing": (1.0, 1.0),
                  "spacing_known": False, "image_path": str(d[self.image_key]), "label_path": str(labels[0])})
        return d

    def _shrink(self, image: np.ndarray, label: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """``(1, H, W)`` arrays to tensors, shrunk so the longer side is at most ``max_side``."""
        if self.max_side is not None and max(image.shape[1:]) > self.max_side:
            image, label = self.shrink_image(image), self.shrink_label(label)
        return (convert_to_tensor(image, torch.float32, track_meta=False),
                convert_to_tensor(label, torch.float32, track_meta=False))


def still_dataset(entries: Sequence[dict], transform: Compose | None = None, cache: bool = True,
                  max_side: int | None = None, num_workers: int | None = 0) -> CacheDataset:
    """A dataset of stills as 1-frame videos: load (cached) then ``transform`` (random, run on every draw)."""
    return video_dataset(entries, transform, cache=cache, num_workers=num_workers,
                         loader=LoadStillPaird(max_side=max_side))
