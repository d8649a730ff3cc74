"""Entry file MONAI Label loads: ``monailabel start_server --app stbv_monai/label --studies DIR``.

MONAI Label looks here for a direct subclass of ``MONAILabelApp``; the app lives in
:mod:`stbv_monai.label.label_app`.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import stbv_monai  # noqa: F401
except ImportError:  # a source checkout that is not pip-installed: use the tree this file is in
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from stbv_monai.label.label_app import STBVLabelApp

__all__ = ["STBVLabelApp"]
