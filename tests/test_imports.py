"""Every subpackage imports on its own, first, in a fresh interpreter (no import cycle hides behind test order)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from stbv_monai import REPO_ROOT

#: the modules on the paths that were circular once (handlers -> engines.distributed -> engines -> stage -> handlers)
PACKAGES = ("handlers", "engines.stage", "data.loaders", "inference")


@pytest.mark.parametrize("package", PACKAGES)
def test_a_subpackage_imports_first(package):
    done = subprocess.run([sys.executable, "-c", f"import stbv_monai.{package}"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
