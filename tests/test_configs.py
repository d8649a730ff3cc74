"""Every shipped overlay merges with the bundle's train.yaml, and its stages instantiate and run at tiny size.

A typo in a variant or preset overlay (an id that no longer exists, a wrong ``_target_``) would
otherwise surface only when someone runs that row of the paper's table.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from monai.bundle import ConfigParser

from conftest import write_disc_dataset
from stbv_monai import BUNDLE_ROOT, REPO_ROOT
from stbv_monai.engines import ClipTrainer, TrainingStage, VideoEvaluator

TRAIN = BUNDLE_ROOT / "configs" / "train.yaml"
TINY = REPO_ROOT / "configs" / "presets" / "tiny.yaml"
VARIANTS = sorted((REPO_ROOT / "configs" / "variants").glob("*.yaml"))
PRESETS = sorted((REPO_ROOT / "configs" / "presets").glob("*.yaml"))
#: The training stages, whose parts are built below; then ``training`` runs the overlay's stages (seconds at tiny).
STAGES = ("pretrain_stage", "teacher_stage", "student_stage")


def _parser(files: list[Path], data: Path, out: Path) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(f) for f in files])
    parser.update({"dataset_dir": str(data), "output_dir": str(out), "tracking_enabled": False})
    parser.parse()
    return parser


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_disc_dataset(tmp_path_factory.mktemp("configs") / "data").parent


@pytest.mark.parametrize("overlay", VARIANTS + [p for p in PRESETS if p.stem not in ("tiny", "paper")],
                         ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_an_overlay_merged_with_tiny_instantiates_and_runs_its_stages(overlay, dataset, tmp_path):
    parser = _parser([TRAIN, overlay, TINY], dataset, tmp_path / "out")
    stages = {name: parser.get_parsed_content(name) for name in STAGES}
    assert all(isinstance(stage, TrainingStage) for stage in stages.values())
    for stage in (stages["pretrain_stage"], stages["teacher_stage"]):  # the student's data exist after stage 2
        assert isinstance(stage.trainer, ClipTrainer) and isinstance(stage.validator, VideoEvaluator)
    parser.get_parsed_content("training")
    if (tmp_path / "out" / "pseudo_labels" / "manifest.json").is_file():
        assert isinstance(stages["student_stage"].trainer, ClipTrainer)
    assert parser.get_parsed_content("variant") == parser["variant"]
    assert (tmp_path / "out" / "evaluation" / "summary.json").is_file()  # "training" ran every stage it lists


def test_the_paper_preset_parses_and_builds_its_networks(dataset, tmp_path):
    parser = _parser([TRAIN, REPO_ROOT / "configs" / "presets" / "paper.yaml"], dataset, tmp_path / "out")
    assert parser.get_parsed_content("spatial_size") == [384, 384]
    assert parser.get_parsed_content("teacher_stage#iterations") == 150_000
    net = parser.get_parsed_content("teacher_stage#network")
    assert sum(p.numel() for p in net.parameters()) > 50e6  # the paper-size STCN
