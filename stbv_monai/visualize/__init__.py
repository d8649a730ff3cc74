"""Pictures people look at: mask overlays on video frames (movies, GIFs) and training curves."""

from __future__ import annotations

from stbv_monai.visualize.curves import plot_curves
from stbv_monai.visualize.overlay import overlay_frames, write_overlay

__all__ = ["overlay_frames", "plot_curves", "write_overlay"]
