"""Pictures people look at: mask overlays on video frames, as movies and GIFs."""

from __future__ import annotations

from stbv_monai.visualize.overlay import overlay_frames, write_overlay

__all__ = ["overlay_frames", "write_overlay"]
