"""Make sure a bundle run has a dataset: use the user's, or generate the synthetic default (videos or stills)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping

from stbv_monai.errors import InputError

__all__ = ["DATALIST_NAME", "ensure_dataset", "ensure_stills"]

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


def ensure_stills(stills_dir: str | os.PathLike, synthetic: Mapping[str, Any] | None = None) -> str:
    """Return the still-image dataset to use, generating synthetic stills first if the folder is new.

    A datalist ``.json`` file or a non-empty folder (BUSI layout) is returned as is; it is checked
    when listed (:func:`stbv_monai.data.stills.load_still_entries`). Only a missing or empty folder
    is generated into.

    Args:
        stills_dir: BUSI-layout folder, or a still-image datalist JSON.
        synthetic: keyword arguments of :func:`stbv_monai.data.synthetic_stills.make_stills`
            (``count``, ``size``, ``seed``, ``normal_fraction``, ``workers``); ``None`` forbids generation.
    """
    path = Path(stills_dir)
    is_json = path.name.lower().endswith(".json")
    if path.is_file() or is_json:
        if not (path.is_file() and is_json):
            raise InputError(path, "still-image datalist file not found" if is_json
                             else "not a still-image dataset: give a BUSI-layout folder or a datalist .json")
        return str(path)
    if path.is_dir() and any(path.iterdir()):
        return str(path)
    if synthetic is None:
        raise InputError(path, "still-image folder is missing or empty (and synthetic generation is off)")
    from stbv_monai.data.synthetic_stills import make_stills

    logger.info("still images %s are missing: generating synthetic breast-ultrasound stills %s", path,
                dict(synthetic))
    return str(make_stills(path, **dict(synthetic)))
