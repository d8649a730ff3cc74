"""Convert videos into the app's datastore layout: one NIfTI 2D+t file per video.

    python -m stbv_monai.label.import_videos SRC STUDIES_DIR [--labels MASKS] [--overwrite]

``SRC`` is a video (MP4/AVI/MOV, DICOM cine, NIfTI), a folder of PNG/JPG frames, or a folder
holding several of those (files and frame sub-folders). Each becomes
``STUDIES_DIR/<name>.nii.gz`` (8-bit grayscale, pixel spacing and frame rate kept where the
source has them), named after the file or folder without its suffixes. With ``--labels MASKS``,
a mask video of the same name in ``MASKS`` (NIfTI, DICOM or a PNG frame folder) is checked
against its video and stored as the video's saved label, ``STUDIES_DIR/labels/final/<name>.nii.gz``.

Existing files are kept unless ``--overwrite``. A video that cannot be read is reported in one
line and the others are still imported; the exit status is 1 when any failed.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from stbv_monai.data import read_mask, read_video, video_format, write_mask, write_video
from stbv_monai.data.io import FRAME_SUFFIXES
from stbv_monai.errors import InputError

__all__ = ["find_videos", "import_video", "main", "video_name"]

logger = logging.getLogger(__name__)

_SUFFIXES = (".nii.gz", ".nii", ".dcm", ".dicom", ".mp4", ".avi", ".mov", ".mkv")


def video_name(path: Path) -> str:
    """The datastore id for ``path``: its name without video suffixes, other characters made safe."""
    name = path.name
    for suffix in _SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "video"


def find_videos(src: Path) -> list[Path]:
    """The videos under ``src``: itself if it is a video or a frame folder, else its children that are."""
    if not src.exists():
        raise InputError(src, "not found")
    if src.is_file() or _is_frame_folder(src):
        return [src]
    found = [p for p in sorted(src.iterdir()) if (p.is_file() and _is_video_file(p)) or _is_frame_folder(p)]
    if not found:
        raise InputError(src, "no videos here (NIfTI, DICOM, MP4/AVI/MOV files or folders of PNG/JPG frames)")
    return found


def import_video(src: Path, studies: Path, labels: Path | None = None, overwrite: bool = False) -> Path | None:
    """Convert one video (and its mask from ``labels``, if any); ``None`` if it already exists.

    Raises:
        InputError: unreadable video or mask, mask not matching the video.
    """
    name = video_name(src)
    target = studies / f"{name}.nii.gz"
    if target.exists() and not overwrite:
        logger.info("%s exists: kept (use --overwrite to replace)", target)
        return None
    video = read_video(src)
    mask_src = _find_mask(labels, name) if labels else None
    mask = read_mask(mask_src) if mask_src else None
    if mask is not None and mask.shape != video.frames.shape:
        raise InputError(mask_src, f"mask shape {tuple(mask.shape)} differs from video {src} "
                                   f"shape {tuple(video.frames.shape)}")
    write_video(target, video.frames, spacing=video.spacing, fps=video.fps)
    if mask is not None:
        write_mask(studies / "labels" / "final" / f"{name}.nii.gz", mask, spacing=video.spacing)
    logger.info("%s -> %s (%d frames%s)", src, target, video.frames.shape[0], ", with label" if mask is not None else "")
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stbv_monai.label.import_videos", description=__doc__.split("\n\n")[0])
    parser.add_argument("src", type=Path, help="a video, a frame folder, or a folder of videos")
    parser.add_argument("studies", type=Path, help="the app's studies folder (created if missing)")
    parser.add_argument("--labels", type=Path, default=None, help="folder of mask videos named like the videos")
    parser.add_argument("--overwrite", action="store_true", help="replace videos already in the studies folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.labels is not None and not args.labels.is_dir():
        print(f"error: {args.labels}: --labels must be a folder of mask videos", file=sys.stderr)
        return 1
    try:
        sources = find_videos(args.src)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    failed = 0
    for src in sources:
        try:
            import_video(src, args.studies, args.labels, args.overwrite)
        except InputError as exc:
            failed += 1
            print(f"error: {exc}", file=sys.stderr)
    logger.info("imported into %s: %d of %d videos", args.studies, len(sources) - failed, len(sources))
    return 1 if failed else 0


def _is_video_file(path: Path) -> bool:
    try:
        return video_format(path) in ("nifti", "dicom", "movie")
    except InputError:
        return False


def _is_frame_folder(path: Path) -> bool:
    return path.is_dir() and any(p.suffix.lower() in FRAME_SUFFIXES for p in path.iterdir())


def _find_mask(labels: Path, name: str) -> Path | None:
    for candidate in sorted(labels.iterdir()) if labels.is_dir() else []:
        if video_name(candidate) == name and (candidate.is_dir() or _is_video_file(candidate)):
            return candidate
    return None


if __name__ == "__main__":
    sys.exit(main())
