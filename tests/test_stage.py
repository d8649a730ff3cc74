"""TrainingStage: one definition builds a whole stage; its starting weights come from a named source or a file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import write_disc_dataset
from stbv_monai.data import load_datalist
from stbv_monai.engines import ClipTrainer, StageSettings, TrainingStage
from stbv_monai.errors import InputError
from stbv_monai.handlers import TrainCheckpoints
from stbv_monai.inference import VideoPropagationInferer
from stbv_monai.networks import training_network
from stbv_monai.networks.stcn import TRAINING_SIZE_KEY
from stbv_monai.networks.synthetic_weights import seeded_state_dict
from stbv_monai.tracking import RunTree
from stbv_monai.transforms import clip_training_transforms

FIXTURE = Path(__file__).parent / "fixtures" / "stcn_reference.pt"


def _settings(tmp_path: Path, **kwargs) -> StageSettings:
    tree = RunTree(tmp_path / "out", enabled=False)
    return StageSettings(output_dir=str(tmp_path / "out"), models_dir=str(tmp_path / "out" / "models"),
                         device="cpu", tracking=tree, batch_size=2, checkpoint_interval=2,
                         inferer=VideoPropagationInferer(top_k=5), **kwargs)


def _stage(tmp_path: Path, name: str = "teacher", network: str = "stcn_small", **kwargs) -> TrainingStage:
    entries = load_datalist(write_disc_dataset(tmp_path / "data"), "training")
    return TrainingStage(name, kwargs.pop("settings", None) or _settings(tmp_path), training_network(network, [32, 32]),
                         entries, clip_training_transforms(32, mode="bootstrap"), iterations=2, **kwargs)


def test_a_stage_builds_its_parts_and_trains_to_its_files(tmp_path):
    stage = _stage(tmp_path)
    assert isinstance(stage.trainer, ClipTrainer) and not stage.finished()
    assert stage.seg_loss.ce.start_warm == 0 and stage.best_path.endswith("teacher_best.pt")
    stage.run()
    assert stage.finished() and Path(stage.model_path).is_file()
    assert (tmp_path / "out" / "teacher" / "checkpoints" / "checkpoint_final.pt").is_file()
    assert sum(isinstance(h, TrainCheckpoints) for h in stage.handlers) == 1


def test_init_from_an_official_stcn_file_loads_every_key(tmp_path):
    fx = torch.load(FIXTURE, weights_only=True)  # STCN's own names and shapes (4-channel value-encoder conv1)
    official = tmp_path / "stcn.pth"
    torch.save(seeded_state_dict(zip(fx["param_names"], fx["param_shapes"]), fx["seed"], fx["gain"]), official)
    stage = _stage(tmp_path, network="stcn", init=official)
    report = stage.load_init()
    own = [k for k in stage.network.network.state_dict() if k != TRAINING_SIZE_KEY]
    assert sorted(report.loaded) == sorted(own) and not report.unexpected and not report.mismatched
    assert report.adapted == ["value_encoder.conv1.weight"]
    assert stage.network.network.trained_at() == (32, 32)  # trains at its own resolution


def test_init_keeps_the_stage_resolution_not_the_files(tmp_path):
    source = _stage(tmp_path / "a")
    getattr(source.network.network, TRAINING_SIZE_KEY).copy_(torch.tensor([64, 64]))  # a file from another size
    path = tmp_path / "pretrain.pt"
    torch.save({f"network.{k}": v for k, v in source.network.network.state_dict().items()}, path)
    stage = _stage(tmp_path / "b", init=path)
    report = stage.load_init()
    assert TRAINING_SIZE_KEY in report.dropped and stage.network.network.trained_at() == (32, 32)
    for key, value in source.network.network.state_dict().items():
        if key != TRAINING_SIZE_KEY:
            assert torch.equal(stage.network.network.state_dict()[key], value), key


def test_init_from_names_a_source_and_a_missing_file_is_one_clear_error(tmp_path):
    missing = tmp_path / "out" / "models" / "pretrain.pt"
    settings = _settings(tmp_path, init_sources={"pretrain": str(missing), "scratch": None})
    assert _stage(tmp_path, settings=settings, init_from="pretrain").init == str(missing)
    assert _stage(tmp_path, settings=settings, init_from="none").init is None
    with pytest.raises(ValueError, match="init_from must be one of"):
        _stage(tmp_path, settings=settings, init_from="imagenet")
    stage = _stage(tmp_path, settings=settings, init_from="pretrain")
    with pytest.raises(InputError, match="pretrain.pt.*run `pretrain` first"):
        stage.train()
