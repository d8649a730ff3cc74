"""Make sure a bundle run has a dataset: use the user's, or generate the synthetic default."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping

from stbv_monai.errors import InputError

__all__ = ["DATALIST_NAME", "ensure_dataset"]

logger = logging.getLogger(__name__)

DATALIST_NAME = "datalist.json"


def ensure_dataset(dataset_dir: str | os.PathLike, synthetic: Mapping[str, Any] | None = None) -> str:
    """Return ``dataset_dir/datalist.json``, generating synthetic videos first if the folder is new.

    Generation only happens into a missing or empty folder, so a user's folder that merely
    lacks a datalist is reported, never written into.

    Args:
        dataset_dir: folder holding ``datalist.json`` (paths in it are relative to the folder).
        synthetic: keyword arguments of :func:`stbv_monai.data.synthetic.make_dataset`
            (``videos``, ``frames``, ``size``, ``seed``); ``None`` forbids generation.
    """
    folder = Path(dataset_dir)
    datalist = folder / DATALIST_NAME
    if datalist.is_file():
        return str(datalist)
    if folder.exists() and any(folder.iterdir()):
        raise InputError(folder, f"no {DATALIST_NAME} in this non-empty dataset folder; write one "
                                 "(see README, 'Bring your own videos') or point --dataset_dir elsewhere")
    if synthetic is None:
        raise InputError(folder, f"dataset folder has no {DATALIST_NAME}")
    from stbv_monai.data.synthetic import make_dataset

    logger.info("dataset %s is missing: generating synthetic breast-ultrasound videos %s", folder, dict(synthetic))
    return str(make_dataset(folder, **dict(synthetic)))
