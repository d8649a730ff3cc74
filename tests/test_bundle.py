"""The MONAI bundle: metadata keys, config ids, and running from the repository root or elsewhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from monai.bundle import ConfigParser

from stbv_monai import BUNDLE_ROOT, REPO_ROOT

CONFIGS = BUNDLE_ROOT / "configs"

# Keys the bundle specification (meta_schema_20240725.json) makes mandatory; the schema itself is
# downloaded by `verify_metadata`, which this offline machine cannot do, so the keys are listed here.
REQUIRED_META = {
    "version", "changelog", "monai_version", "pytorch_version", "numpy_version", "required_packages_version",
    "task", "description", "authors", "copyright", "network_data_format",
}
REQUIRED_TENSOR = {"type", "format", "num_channels", "spatial_shape", "dtype", "value_range", "is_patch_data"}


def test_metadata_has_every_mandatory_key():
    meta = json.loads((CONFIGS / "metadata.json").read_text())
    assert REQUIRED_META <= meta.keys()
    assert meta["version"] in meta["changelog"]
    fmt = meta["network_data_format"]
    for group in ("inputs", "outputs"):
        for name, tensor in fmt[group].items():
            assert REQUIRED_TENSOR <= tensor.keys(), (group, name)
            assert len(tensor["channel_def"]) == tensor["num_channels"]
    assert fmt["inputs"]["image"]["modality"] == "US"


def test_top_level_ids_resolve_and_override():
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "train.yaml"))
    assert parser.get_parsed_content("bundle_root") == str(BUNDLE_ROOT)
    assert str(parser.get_parsed_content("device")) in ("cpu", "cuda")
    parser["dataset_dir"] = "/somewhere/else"
    assert parser.get_parsed_content("dataset_dir") == "/somewhere/else"
    for key in ("output_dir", "training", "run"):
        assert key in parser.config


@pytest.mark.parametrize("cwd", [REPO_ROOT, BUNDLE_ROOT])
def test_bundle_reports_bad_dataset_in_one_line_from_any_folder(tmp_path, cwd):
    (tmp_path / "unrelated.txt").write_text("a user's file")
    config = os.path.relpath(CONFIGS / "train.yaml", cwd)
    proc = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", config,
         "--dataset_dir", str(tmp_path)],
        cwd=cwd, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path}: no datalist.json in this non-empty dataset folder; write one "
        "(see README, 'Bring your own videos') or point --dataset_dir elsewhere"
    )
    assert "Traceback" not in proc.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["unrelated.txt"]


def test_each_variant_overlay_is_named_after_its_file():
    """One name everywhere: the overlay file, its MLflow tag / table row, and the README's row."""
    import yaml

    readme = (REPO_ROOT / "README.md").read_text()
    for path in sorted((REPO_ROOT / "configs" / "variants").glob("*.yaml")):
        assert yaml.safe_load(path.read_text())["variant"] == path.stem, path
        assert f"`configs/variants/{path.stem}.yaml`" in readme, path
