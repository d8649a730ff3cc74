"""Multi-process training: sharding and per-draw seeding, and a two-process (Gloo, CPU) three-stage run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from stbv_monai import BUNDLE_ROOT, REPO_ROOT
from stbv_monai.data import load_datalist, read_mask
from stbv_monai.data.dataset import video_dataset
from stbv_monai.data.loaders import SeededDraws, ShardSampler, per_process_batch, sharded_clip_loader
from stbv_monai.engines.distributed import (
    barrier,
    ddp,
    get_rank,
    get_world_size,
    init_distributed,
    is_main_process,
    main_process_first,
)
from stbv_monai.transforms import clip_training_transforms

from conftest import write_disc_dataset
from mlflow_utils import assert_three_stage_tree

CONFIGS = BUNDLE_ROOT / "configs"
TINY = REPO_ROOT / "configs" / "presets" / "tiny.yaml"
TORCHRUN = Path(sys.executable).with_name("torchrun")


def _steps(sampler: ShardSampler, batch: int) -> list[list[int]]:
    indices = [i for i, _ in sampler]
    return [indices[k : k + batch] for k in range(0, len(indices), batch)]


@pytest.mark.parametrize("n, global_batch", [(7, 4), (19, 4), (3, 4), (12, 6)])
def test_shards_deal_out_the_single_process_batches(n, global_batch):
    one = _steps(ShardSampler(range(n), global_batch, seed=3, num_replicas=1, rank=0), global_batch)
    two = [_steps(ShardSampler(range(n), global_batch, seed=3, num_replicas=2, rank=r), global_batch // 2)
           for r in (0, 1)]
    assert len(one) == len(two[0]) == len(two[1]) == max(n // global_batch, 1)
    for k, step in enumerate(one):
        assert sorted(two[0][k] + two[1][k]) == sorted(step)
        assert not set(two[0][k]) & set(two[1][k]) or n < global_batch  # disjoint unless videos repeat


def test_every_pass_is_reshuffled_and_numbered():
    sampler = ShardSampler(range(40), 4, seed=0, num_replicas=2, rank=1)
    first, second = list(sampler), list(sampler)
    assert {p for _, p in first} == {0} and {p for _, p in second} == {1}
    assert [i for i, _ in first] != [i for i, _ in second]
    assert len(first) == len(sampler) == 20


def test_global_batch_must_split_evenly():
    assert per_process_batch(8, 4) == 2
    with pytest.raises(ValueError, match="not divisible"):
        per_process_batch(6, 4)


def test_a_draw_depends_on_its_index_and_pass_only(disc_dataset):
    entries = load_datalist(disc_dataset, "training")
    draws = SeededDraws(video_dataset(entries, clip_training_transforms(32, mode="bootstrap", stcs=True)), seed=0)
    first = draws[(1, 0)]
    draws[(0, 0)], draws[(2, 5)]  # other draws in between do not change it
    again = draws[(1, 0)]
    assert torch.equal(first["image"], again["image"]) and torch.equal(first["stcs_image"], again["stcs_image"])
    assert not torch.equal(first["image"], draws[(1, 1)]["image"])


def test_two_processes_load_the_clips_of_one(tmp_path):
    entries = load_datalist(write_disc_dataset(tmp_path / "data", n_videos=4), "training")
    transforms = clip_training_transforms(32, mode="bootstrap", stcs=True)
    one = next(iter(sharded_clip_loader(entries, transforms, 4, seed=0, rank=0, world_size=1)))
    two = [next(iter(sharded_clip_loader(entries, transforms, 4, seed=0, rank=r, world_size=2))) for r in (0, 1)]
    assert all(b["image"].shape[0] == 2 for b in two)
    by_video = {p: img for b in two for p, img in zip(b["image_path"], b["image"])}
    assert sorted(by_video) == sorted(one["image_path"])
    for path, image in zip(one["image_path"], one["image"]):
        assert torch.equal(by_video[path], image)


def test_helpers_fall_back_to_one_process():
    assert (get_rank(), get_world_size(), is_main_process()) == (0, 1, True)
    barrier()  # no process group: returns at once
    assert main_process_first(lambda x: x + 1, 1) == 2


def test_outside_torchrun_init_says_how_to_launch(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(RuntimeError, match="torchrun"):
        init_distributed("cpu")


def test_sync_bn_is_refused_on_cpu():
    with pytest.raises(ValueError, match="GPUs"):
        ddp(torch.nn.BatchNorm2d(2), "cpu", sync_bn=True)


def _single_process_pseudo_labels(dataset_dir: Path, teacher: Path, out: Path) -> Path:
    """Stage 2 of train.yaml (tiny preset) in this process, from a given teacher file."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "train.yaml"), str(TINY)])
    parser.update({"dataset_dir": str(dataset_dir), "output_dir": str(out), "teacher_stage#model_path": str(teacher)})
    return parser.get_parsed_content("pseudo_label_stage#labeller").run()


@pytest.mark.slow
def test_two_process_three_stage_run(tmp_path):
    """torchrun, 2 CPU processes: all stages run on both, files are written once, stage 2 equals 1 process."""
    data = write_disc_dataset(tmp_path / "data").parent
    out = tmp_path / "out"
    configs = [str(CONFIGS / "train.yaml"), str(TINY), str(CONFIGS / "multi_gpu_train.yaml")]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.run(
        [str(TORCHRUN), "--standalone", "--nnodes=1", "--nproc_per_node=2", "-m", "monai.bundle", "run", "training",
         "--config_file", str(configs), "--dataset_dir", str(data), "--output_dir", str(out)],
        capture_output=True, text=True, timeout=600, cwd=REPO_ROOT, env=env,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]

    # both processes joined and trained the three training stages; the logged losses are the all-process means
    assert "process 0 of 2" in log and "process 1 of 2" in log
    done = re.findall(r"rank (\d) of 2: 3 iterations run, last loss \(all processes\) ([\d.]+)", log)
    assert sorted(r for r, _ in done) == ["0", "0", "0", "1", "1", "1"]
    for stage in range(3):  # pretrain, teacher, student: both processes log one mean
        assert len({v for _, v in done[2 * stage:2 * stage + 2]}) == 1, done

    # one set of outputs: exactly these files, no per-rank duplicates or leftovers (MLflow's artifact
    # copies under mlruns/ are checked through MLflow below)
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.relative_to(out).parts[0] != "mlruns")
    expected = sorted(
        [f"models/{m}.pt" for m in ("pretrain", "pretrain_best", "teacher", "teacher_best", "student", "student_best",
                                    "model")]
        + [f"{s}/checkpoints/checkpoint_{c}.pt" for s in ("pretrain", "teacher", "student")
           for c in ("iteration=2", "final")]
        + [f"pseudo_labels/vid{i}.{ext}" for i in range(3) for ext in ("json", "nii.gz")]
        + ["pseudo_labels/manifest.json"]
        + [f"evaluation/{sub}{f}" for sub in ("", "first_frame/")
           for f in ("metrics_per_frame.csv", "metrics_per_video.csv", "metrics_plot.png", "summary.json")]
        + [f"evaluation/previews/overlays/vid{i}.gif" for i in range(2)]
        + ["pretrain/losses.png", "teacher/losses.png", "student/losses.png", "mlruns.db", "mlflow_run.json"]
    )
    assert written == expected
    assert log.count("saved network to") == 6 and log.count("wrote evaluation reports") == 2  # rank 0 only, both protocols

    # one MLflow run tree, written by rank 0: a parent and its five stages
    assert_three_stage_tree(f"sqlite:///{out}/mlruns.db", iterations=3)

    # stage 2 sharded over 2 processes equals stage 2 in 1 process with the same teacher
    single = _single_process_pseudo_labels(data, out / "models" / "teacher.pt", tmp_path / "single")
    multi = json.loads((out / "pseudo_labels" / "manifest.json").read_text())
    ref = json.loads(Path(single).read_text())
    assert [v["image"] for v in multi["videos"]] == [v["image"] for v in ref["videos"]]
    for a, b in zip(multi["videos"], ref["videos"]):
        assert a["source"] == b["source"] and a["labelled_frames"] == b["labelled_frames"]
        np.testing.assert_allclose(a["confidence"], b["confidence"], atol=1e-4)
        np.testing.assert_array_equal(read_mask(a["label"]), read_mask(b["label"]))
    assert multi["summary"]["frames_pseudo"] == ref["summary"]["frames_pseudo"]

    # the final model was evaluated
    summary = json.loads((out / "evaluation" / "summary.json").read_text())
    assert summary["n_videos"] == 3 and 0.0 <= summary["J&F"] <= 1.0
