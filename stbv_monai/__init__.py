"""stbv-monai: label-efficient (two-shot) video segmentation of breast lesions in ultrasound."""

from __future__ import annotations

from pathlib import Path

__version__ = "0.1.0"

#: The repository (or source tree) holding the MONAI bundle next to this package.
REPO_ROOT = Path(__file__).resolve().parents[1]
#: The MONAI bundle folder; bundle configs default their ``bundle_root`` to it.
BUNDLE_ROOT = REPO_ROOT / "bundle"
