"""Refuse a video that cannot be segmented in this machine's memory, before the work starts.

Propagation runs the network at its training resolution, but its output lives at the video's
native size: float32 probabilities and their copy out of inference mode, then the thresholded
mask (:data:`BYTES_PER_PIXEL` per pixel of ``T x H x W``, on top of the frames themselves). A
3000x3000 video of 100 frames needs about 11 GiB more than its frames; without a check it trains
for a stage and then dies in stage 2. :func:`check_video_memory` is called where each video is
loaded (training, pseudo-labelling, evaluation), so the refusal comes first, naming the file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from stbv_monai.errors import InputError

__all__ = ["BYTES_PER_PIXEL", "MEMORY_LIMIT_ENV", "available_bytes", "check_video_memory"]

#: Memory one frame pixel costs at native size when a video is segmented (see module doc).
BYTES_PER_PIXEL = 12
#: Environment variable capping what one video may need, in GiB (e.g. on a shared server).
MEMORY_LIMIT_ENV = "STBV_MEMORY_LIMIT_GB"


def available_bytes() -> int:
    """Memory this process may still use: ``STBV_MEMORY_LIMIT_GB`` if set, else what the OS
    reports available, lowered to the cgroup's (container's) remaining limit where there is one."""
    limit = os.environ.get(MEMORY_LIMIT_ENV)
    if limit:
        try:
            return int(float(limit) * 2**30)
        except ValueError:
            raise InputError(MEMORY_LIMIT_ENV, f"must be a number of GiB, got {limit!r}") from None
    import psutil

    free = int(psutil.virtual_memory().available)
    cgroup = Path("/sys/fs/cgroup")
    try:
        cap = (cgroup / "memory.max").read_text().strip()
        if cap != "max":
            free = min(free, int(cap) - int((cgroup / "memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return free


def check_video_memory(shape: Sequence[int], path: str | os.PathLike) -> None:
    """Raise if segmenting a ``(T, H, W)`` video needs more memory than is available.

    Raises:
        InputError: naming ``path``, the memory needed and the memory available.
    """
    pixels = 1
    for n in shape:
        pixels *= int(n)
    need, free = pixels * BYTES_PER_PIXEL, available_bytes()
    if need > free:
        dims = "x".join(str(int(n)) for n in shape)
        raise InputError(path, f"a {dims} (frames x height x width) video needs about {need / 2**30:.2f} GiB to "
                               f"segment at its native size, more than the {free / 2**30:.2f} GiB available; "
                               f"downsample it or cut it into shorter videos")
