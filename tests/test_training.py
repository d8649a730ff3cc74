"""The three training stages: what each must do, checked on tiny data with the real engines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Events

from mlflow_utils import assert_three_stage_tree, run_tree
from stbv_monai import BUNDLE_ROOT, REPO_ROOT
from stbv_monai.data import load_datalist, read_mask
from stbv_monai.data.loaders import clip_loader
from stbv_monai.engines import ClipTrainer
from stbv_monai.handlers import TrainCheckpoints, latest_checkpoint
from stbv_monai.handlers import EMARelabel
from stbv_monai.losses import SegmentationLoss, STCSLoss
from stbv_monai.networks import ClipTrainingWrapper, build_network
from stbv_monai.transforms import clip_training_transforms

TINY = REPO_ROOT / "configs" / "presets" / "tiny.yaml"


def _trainer(entries, iterations=2, stcs=True, folder=None, resume=False, seed=0):
    torch.manual_seed(seed)
    net = ClipTrainingWrapper(build_network("stcn_small"))
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    handlers = [TrainCheckpoints(folder, net, opt, interval=1, resume=resume)] if folder else []
    loader = clip_loader(entries, clip_training_transforms(32, mode="bootstrap", stcs=stcs), batch_size=2, seed=seed)
    return ClipTrainer(device=torch.device("cpu"), max_epochs=1, epoch_length=iterations, train_data_loader=loader,
                       network=net, optimizer=opt, seg_loss=SegmentationLoss(start_warm=100, end_warm=200),
                       stcs_loss=STCSLoss(0.1) if stcs else None, train_handlers=handlers)


def test_teacher_never_backpropagates_through_unlabelled_labels(disc_dataset):
    """Stage 1's loss must not depend on the label of any unlabelled frame."""
    entries = load_datalist(disc_dataset, "training")
    trainer = _trainer(entries, iterations=1, stcs=False)
    batch = next(iter(trainer.data_loader))
    batch["source"][:, 2] = 0  # pretend frame 2 of each clip is unlabelled
    net = trainer.network

    def grads(label):
        net.zero_grad()
        b = dict(batch, label=label)
        torch.manual_seed(0)
        _, _ = trainer._forward_loss(trainer, {k: v for k, v in b.items() if isinstance(v, torch.Tensor)})
        trainer.state.output["loss"].backward()
        return torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None])

    trainer.state.iteration = 1
    scrambled = batch["label"].clone()
    scrambled[:, 2] = 1 - scrambled[:, 2]  # flip the unlabelled frame's label
    assert torch.allclose(grads(batch["label"]), grads(scrambled))
    scrambled[:, 1] = 1 - scrambled[:, 1]  # ...whereas a labelled frame's label matters
    assert not torch.allclose(grads(batch["label"]), grads(scrambled))


def test_training_reduces_the_loss_and_logs_its_parts(disc_dataset):
    entries = load_datalist(disc_dataset, "training")
    trainer = _trainer(entries, iterations=12)
    losses = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(e.state.output["loss"].item()))
    trainer.run()
    assert {"loss_gt", "loss_pseudo", "loss_stcs", "loss_seg"} <= trainer.state.output.keys()
    assert np.mean(losses[-4:]) < np.mean(losses[:4])


def test_resume_restores_the_exact_iteration_and_weights(disc_dataset, tmp_path):
    entries = load_datalist(disc_dataset, "training")
    first = _trainer(entries, iterations=3, folder=tmp_path)
    first.add_event_handler(Events.ITERATION_COMPLETED(once=2), lambda e: e.terminate())
    first.run()
    assert first.state.iteration == 2
    saved = latest_checkpoint(tmp_path)
    assert saved is not None and torch.load(saved, weights_only=True)["trainer"]["iteration"] == 2
    resumed = _trainer(entries, iterations=3, folder=tmp_path, resume=True, seed=1)
    seen = []
    resumed.add_event_handler(Events.ITERATION_STARTED, lambda e: seen.append(e.state.iteration))
    resumed.add_event_handler(Events.STARTED, lambda e: seen.append(
        all(torch.equal(a, b) for a, b in zip(e.network.state_dict().values(), first.network.state_dict().values()))))
    resumed.run()
    assert seen[0] is True  # weights restored before the first resumed iteration
    assert seen[1:] == [3]  # continues at iteration 3 of 3, not from 1


@pytest.mark.slow
def test_three_stage_bundle_run_on_tiny_data(disc_dataset, tmp_path):
    """`run training` with the tiny preset: pretraining, teacher, pseudo-labels, student, evaluation."""
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file",
         f"['{BUNDLE_ROOT / 'configs' / 'train.yaml'}','{TINY}']",
         "--dataset_dir", str(disc_dataset.parent), "--output_dir", str(out)],
        capture_output=True, text=True, timeout=600, cwd=REPO_ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("pretrain.pt", "teacher.pt", "student.pt", "model.pt"):
        assert (out / "models" / name).is_file()
    manifest = json.loads((out / "pseudo_labels" / "manifest.json").read_text())
    assert len(manifest["videos"]) == 3 and manifest["summary"]["frames_gt"] == 6
    summary = json.loads((out / "evaluation" / "summary.json").read_text())
    assert 0.0 <= summary["J&F"] <= 1.0 and summary["n_videos"] == 3
    assert (out / "teacher" / "checkpoints" / "checkpoint_final.pt").is_file()

    # tracked by default in the embedded SQLite store under output_dir
    store = f"sqlite:///{out}/mlruns.db"
    assert_three_stage_tree(store, iterations=3)

    # a stage that fails (a training video became unreadable) marks its run and a new parent FAILED
    (disc_dataset.parent / "images" / "vid2.nii.gz").write_bytes(b"not a nifti file")
    proc = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "pseudo_label", "--config_file",
         f"['{BUNDLE_ROOT / 'configs' / 'train.yaml'}','{TINY}']", "--dataset_dir", str(disc_dataset.parent),
         "--output_dir", str(out), "--pseudo_label_stage#dir", str(tmp_path / "relabel")],
        capture_output=True, text=True, timeout=600, cwd=REPO_ROOT,
    )
    assert proc.returncode != 0 and "vid2.nii.gz" in proc.stderr
    _, parents, children = run_tree(store)
    failed = parents[-1]
    stages = children[failed.info.run_id]
    assert len(stages) == 1, [(r.info.run_name, r.info.status, r.data.tags.get("error")) for r in stages]
    stage = stages[0]
    assert len(parents) == 2 and failed.info.status == "FAILED" and "vid2.nii.gz" in failed.data.tags["error"]
    assert stage.info.run_name == "pseudo_label" and stage.info.status == "FAILED"


def _tiny_run(dataset, out, seed, *extra):
    proc = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file",
         f"['{BUNDLE_ROOT / 'configs' / 'train.yaml'}','{TINY}']", "--dataset_dir", str(dataset.parent),
         "--output_dir", str(out), "--seed", str(seed), "--tracking_enabled", "false", *extra],
        capture_output=True, text=True, timeout=600, cwd=REPO_ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "evaluation" / "summary.json").read_text())
    labels = {p.name: read_mask(p).tobytes() for p in sorted((out / "pseudo_labels").glob("*.nii.gz"))}
    return summary, labels


@pytest.mark.slow
def test_same_seed_same_result_and_another_seed_differs(disc_dataset, tmp_path):
    """Teacher, pseudo-labels, student (CutMix included) and both test protocols repeat bit for bit."""
    workers = ("--num_workers", "1")  # worker processes are seeded from the run's seed too
    a = _tiny_run(disc_dataset, tmp_path / "a", 3, *workers)
    b = _tiny_run(disc_dataset, tmp_path / "b", 3, *workers)
    c = _tiny_run(disc_dataset, tmp_path / "c", 4, *workers)
    metrics = ("J&F", "J", "F", "Dice", "HD95")
    assert set(a[0]["first_frame"]) >= set(metrics)  # both protocols are in summary.json
    assert [a[0][k] for k in metrics] == [b[0][k] for k in metrics]
    assert [a[0]["first_frame"][k] for k in metrics] == [b[0]["first_frame"][k] for k in metrics]
    assert a[1] == b[1] and len(a[1]) == 3
    assert a[1] != c[1] or [a[0][k] for k in metrics] != [c[0][k] for k in metrics]


def _ema_trainer(batch, folder, seed, iterations=4, resume=False):
    """A student with the update baseline's EMA teacher, checkpointed with it; every batch the same."""
    torch.manual_seed(seed)
    net = ClipTrainingWrapper(build_network("stcn_small"))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    relabel = EMARelabel(net, alpha=0.9, start_iteration=100)
    saver = TrainCheckpoints(folder, net, opt, interval=1, resume=resume, extra={"ema_teacher": relabel})
    trainer = ClipTrainer(device=torch.device("cpu"), max_epochs=1, epoch_length=iterations,
                          train_data_loader=[batch] * iterations, network=net, optimizer=opt,
                          seg_loss=SegmentationLoss(start_warm=100, end_warm=200), train_handlers=[saver, relabel])
    return trainer, relabel


def test_the_ema_teacher_survives_resume(disc_dataset, tmp_path):
    """Stopped at 2 of 4 and resumed (a fresh process would rebuild the EMA from new weights) = straight through."""
    batch = next(iter(clip_loader(load_datalist(disc_dataset, "training"),
                                  clip_training_transforms(32, mode="bootstrap"), batch_size=2)))
    straight, straight_ema = _ema_trainer(batch, tmp_path / "straight", seed=0)
    straight.run()
    first, _ = _ema_trainer(batch, tmp_path / "stopped", seed=0)
    first.add_event_handler(Events.ITERATION_COMPLETED(once=2), lambda e: e.terminate())
    first.run()
    resumed, resumed_ema = _ema_trainer(batch, tmp_path / "stopped", seed=1, resume=True)
    resumed.run()
    assert resumed.state.iteration == 4
    for (name, a), b in zip(straight_ema.ema.state_dict().items(), resumed_ema.ema.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name
    fresh = EMARelabel(ClipTrainingWrapper(build_network("stcn_small")))  # what a resume used to start from
    assert not all(torch.equal(a, b) for a, b in zip(fresh.ema.state_dict().values(),
                                                      resumed_ema.ema.state_dict().values()))


@pytest.mark.slow
def test_training_on_a_two_site_datalist_without_validation(tmp_path):
    """`run training` where it used to lose data or crash: two sites with the same file name, 1, 2 and 5
    labelled frames, a video outside the dataset folder, no validation split."""
    from conftest import TWO_SITE_VIDEOS, write_two_site_dataset

    datalist = write_two_site_dataset(tmp_path)
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file",
         f"['{BUNDLE_ROOT / 'configs' / 'train.yaml'}','{TINY}']", "--dataset_dir", str(datalist.parent),
         "--output_dir", str(out), "--tracking_enabled", "false"],
        capture_output=True, text=True, timeout=600, cwd=REPO_ROOT,
    )
    logs = proc.stdout + proc.stderr
    assert proc.returncode == 0, logs[-3000:]
    assert "Traceback" not in logs and "CRITICAL" not in logs
    assert logs.count("lead outside the dataset folder") == 1  # once per datalist
    assert logs.count("no validation split in the datalist: no validation runs, the final weights are kept") == 3
    models = sorted(p.name for p in (out / "models").iterdir())
    assert models == ["model.pt", "pretrain.pt", "student.pt", "teacher.pt"]  # final weights, no *_best.pt

    manifest = json.loads((out / "pseudo_labels" / "manifest.json").read_text())
    ids = ["siteA__images__bus_0000", "siteB__images__bus_0000", "siteB__images__bus_0001",
           "up__shared__images__bus_0002"]
    assert [v["id"] for v in manifest["videos"]] == ids
    assert [v["labelled_frames"] for v in manifest["videos"]] == list(TWO_SITE_VIDEOS.values())
    assert manifest["summary"]["frames_gt"] == 1 + 2 + 5 + 2
    for v in manifest["videos"]:  # each pseudo-label video is its own: ground truth kept on its labelled frames
        assert Path(v["label"]).name == f"{v['id']}.nii.gz"
        pseudo, gt = read_mask(v["label"]), read_mask(v["gt_label"])
        np.testing.assert_array_equal(pseudo[v["labelled_frames"]], gt[v["labelled_frames"]])

    rows = (out / "evaluation" / "metrics_per_video.csv").read_text().splitlines()[1:]
    assert [r.split(",")[0] for r in rows] == ids[:2]
    previews = sorted(p.name for p in (out / "evaluation" / "previews" / "overlays").iterdir())
    assert previews == [f"{i}.gif" for i in ids[:2]]
