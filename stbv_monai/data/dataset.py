"""Video-level datasets: datalist entries loaded, checked and cached as whole videos.

Training samples clips from a video many times, so videos are loaded once and kept (MONAI's
``CacheDataset`` caches everything up to the first random transform); the clip sampling and
augmentation that follow run fresh on every draw.
"""

from __future__ import annotations

from typing import Any, Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import CacheDataset
from monai.transforms import Compose, MapTransform

from stbv_monai.constants import SOURCE_GT, SOURCE_NONE, SOURCE_PSEUDO  # re-exported
from stbv_monai.data.datalist import load_video_pair

__all__ = ["SOURCE_NONE", "SOURCE_GT", "SOURCE_PSEUDO", "LoadVideoPaird", "video_dataset"]



class LoadVideoPaird(MapTransform):
    """Load a datalist entry's video and mask video and check they belong together.

    Reads ``image``/``label`` paths and ``labelled_frames``; writes ``image`` (T, H, W) float32
    tensor, ``label`` (T, H, W) float32 {0, 1}, ``spacing`` and the original paths as
    ``image_path``/``label_path``. A per-frame ``source`` in the entry (the pseudo-label set of
    stage 2) is kept as a ``(T,)`` uint8 tensor; otherwise the clip sampler derives it.
    """

    def __init__(self, keys: KeysCollection = ("image", "label")) -> None:
        super().__init__(keys)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        pair = load_video_pair(d)
        if "source" in d:
            d["source"] = torch.as_tensor(np.asarray(d["source"], dtype=np.uint8))
        if "confidence" in d:
            d["confidence"] = torch.as_tensor(np.asarray(d["confidence"], dtype=np.float32))
        d.update(
            image=torch.from_numpy(pair["image"]),
            label=torch.from_numpy(pair["label"].astype(np.float32)),
            labelled_frames=pair["labelled_frames"],
            spacing=pair["spacing"] or (1.0, 1.0),
            spacing_known=pair["spacing"] is not None,
            image_path=pair["image_path"],
            label_path=pair["label_path"],
        )
        return d


def video_dataset(entries: Sequence[dict], transform: Compose | None = None, cache: bool = True,
                  num_workers: int | None = 0, loader: MapTransform | None = None) -> CacheDataset:
    """A dataset of whole videos: load (cached) then ``transform`` (random, run on every draw).

    ``loader`` reads an entry (default :class:`LoadVideoPaird`; ``stills.LoadStillPaird`` for stills).
    """
    steps = [loader if loader is not None else LoadVideoPaird()]
    if transform is not None:
        steps.extend(transform.transforms if isinstance(transform, Compose) else [transform])
    return CacheDataset(list(entries), Compose(steps), cache_rate=1.0 if cache else 0.0,
                        num_workers=num_workers, progress=False)
