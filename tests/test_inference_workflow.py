"""The inference bundle workflow end to end, as users run it (a real ``monai.bundle run`` subprocess).

Each bundle run costs about 10 s of imports, so the runs are few and each checks a lot:
NIfTI + DICOM inputs with probabilities and MP4 overlays; PNG frame folders with GIF overlays
(and ``--save_probs false``, which the CLI passes as the string ``'false'``); a
checkpoint for another architecture reported in one line; a file that is not a checkpoint and
a missing one are checked through the same config id in-process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

from stbv_monai import BUNDLE_ROOT, REPO_ROOT
from stbv_monai.data import read_mask, read_video, write_mask, write_video
from stbv_monai.errors import InputError, find_input_error
from stbv_monai.networks import PropagationNet, build_network

from conftest import disc_video, write_disc_dataset

CONFIG = BUNDLE_ROOT / "configs" / "inference.yaml"
T = 7


def run_inference(dataset: Path, ckpt: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    """``python -m monai.bundle run --config_file bundle/configs/inference.yaml ...`` from the repo root."""
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(CONFIG.relative_to(REPO_ROOT)),
           "--dataset_dir", str(dataset), "--ckpt", str(ckpt), "--output_dir", str(out), *extra]
    # One thread: these videos are tiny, and two OpenMP threads on a busy 2-core machine wait on each other.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)


def add_videos(root: Path, names: dict[str, tuple[str, int]]) -> Path:
    """Write ``{id: (suffix, size)}`` disc videos (suffix ``""``: PNG frame folders) and a datalist of them."""
    entries = []
    for i, (vid, (suffix, size)) in enumerate(names.items()):
        frames, mask = disc_video(T, size, seed=10 + i)
        write_video(root / "images" / f"{vid}{suffix}", frames, spacing=(0.5, 0.5))
        write_mask(root / "labels" / f"{vid}{suffix}", mask, spacing=(0.5, 0.5))
        entries.append({"image": f"images/{vid}{suffix}", "label": f"labels/{vid}{suffix}", "labelled_frames": [1, 5]})
    path = root / "datalist.json"
    old = json.loads(path.read_text())["test"] if path.exists() else []
    path.write_text(json.dumps({"test": old + entries}))
    return root


def check_masks(out: Path, dataset: Path, expected: dict[str, Path]) -> None:
    """Every video's mask file exists where expected, has the input's shape and keeps the reference masks."""
    entries = {Path(e["image"]).name: e for e in json.loads((dataset / "datalist.json").read_text())["test"]}
    assert sorted(p.name for p in (out / "masks").iterdir()) == sorted(p.name for p in expected.values())
    for image_name, mask_file in expected.items():
        entry = entries[image_name]
        frames = read_video(dataset / entry["image"]).frames
        pred = read_mask(mask_file)
        assert pred.shape == frames.shape, image_name
        label = read_mask(dataset / entry["label"])
        for t in entry["labelled_frames"]:
            np.testing.assert_array_equal(pred[t], label[t], err_msg=f"{image_name} reference frame {t}")


def assert_one_line_error(proc: subprocess.CompletedProcess, prefix: str) -> str:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(prefix), proc.stderr[-3000:]
    return last


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """An untrained ``stcn_small`` checkpoint in the bundle's format (``network.``-prefixed state dict)."""
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    torch.manual_seed(0)
    torch.save(PropagationNet(build_network("stcn_small")).state_dict(), path)
    return path


def test_nifti_and_dicom_give_nifti_masks_probabilities_and_mp4_overlays(tmp_path, ckpt):
    data = tmp_path / "data"
    write_disc_dataset(data, n_videos=1, t=T, size=32)  # images/vid0.nii.gz, labelled frames 1 and 5
    add_videos(data, {"cine": (".dcm", 36)})  # 36: not a multiple of 16, padded and cropped back
    out = tmp_path / "out"
    proc = run_inference(data, ckpt, out, "--save_probs", "true")
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_masks(out, data, {"vid0.nii.gz": out / "masks" / "vid0.nii.gz", "cine.dcm": out / "masks" / "cine.nii.gz"})
    for name, size in (("vid0", 32), ("cine", 36)):
        probs = read_video(out / "probs" / f"{name}.nii.gz").frames
        assert probs.shape == (T, size, size)
        assert read_mask(out / "masks" / f"{name}.nii.gz").max() <= 1
        overlay = read_video(out / "overlays" / f"{name}.mp4")
        assert overlay.frames.shape == (T, size, size)
    assert "frames of vid0" in proc.stderr and "frames of cine" in proc.stderr  # the per-video frame bar
    assert "inference (videos)" in proc.stderr


def test_png_frame_folders_give_png_masks_and_gif_overlays(tmp_path, ckpt):
    import imageio.v3 as iio

    data = add_videos(tmp_path / "data", {"clip_a": ("", 32), "clip_b": ("", 48)})
    out = tmp_path / "out"
    proc = run_inference(data, ckpt, out, "--overlay", "gif", "--save_probs", "false")
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_masks(out, data, {"clip_a": out / "masks" / "clip_a", "clip_b": out / "masks" / "clip_b"})
    assert all(p.suffix == ".png" for p in (out / "masks" / "clip_a").iterdir())
    assert not (out / "probs").exists()
    for name, size in (("clip_a", 32), ("clip_b", 48)):
        gif = iio.imread(out / "overlays" / f"{name}.gif", index=None)
        assert gif.shape[:3] == (T, size, size)
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["clip_a.gif", "clip_b.gif"]


def _paper_size_checkpoint(path: Path) -> Path:
    """A ResNet-50-size ``stcn`` checkpoint (uninitialised values: only names and shapes matter)."""
    with torch.device("meta"):
        shapes = PropagationNet(build_network("stcn")).state_dict()
    torch.save({k: torch.zeros(v.shape, dtype=v.dtype) for k, v in shapes.items()}, path)
    return path


def test_checkpoint_of_another_architecture_is_one_line_without_traceback(tmp_path):
    data = write_disc_dataset(tmp_path / "data", n_videos=1, t=T, size=32).parent
    bad = _paper_size_checkpoint(tmp_path / "stcn.pt")
    proc = run_inference(data, bad, tmp_path / "out")  # network_name stays stcn_small
    line = assert_one_line_error(proc, f"error: {bad}: checkpoint does not fit this network")
    # names the keys that do not fit, with both shapes, and the unexpected ones
    assert "shape-mismatched key(s): key_encoder.conv1.weight (64, 3, 7, 7) vs model (32, 3, 7, 7)" in line
    assert "unexpected key(s): key_encoder.res2.0.conv3.weight" in line
    assert not (tmp_path / "out" / "masks").exists()


@pytest.mark.parametrize(
    "make, problem",
    [
        (lambda p: p.write_text("these are not weights\n"), "not a PyTorch checkpoint"),
        (lambda p: None, "checkpoint file not found"),
    ],
    ids=["not-a-checkpoint", "missing"],
)
def test_bad_checkpoint_file_names_the_file(tmp_path, make, problem):
    """The config's ``network`` raises an InputError naming the file (the same path as the run above,
    whose excepthook prints it as one line; parsed in-process to spare a 10 s bundle start each)."""
    ckpt = tmp_path / "model.pt"
    make(ckpt)
    parser = ConfigParser()
    parser.read_config(str(CONFIG))
    parser.update({"dataset_dir": str(tmp_path), "ckpt": str(ckpt)})
    with pytest.raises(Exception) as info:
        parser.get_parsed_content("network")
    err = find_input_error(info.value)
    assert isinstance(err, InputError), info.value
    assert err.source == str(ckpt) and err.problem.startswith(problem)
    assert "\n" not in str(err)


def test_frame_progress_bar_counts_the_propagated_frames(capsys):
    """``VideoPropagationInferer(show_frames=True)`` (the workflow's ``show_frames``) shows a bar per video."""
    from stbv_monai.inference import VideoPropagationInferer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        net = build_network("stcn_small").eval()
        frames, masks = disc_video(T, 32)
        video, entry = torch.from_numpy(frames), {"image": "images/clip.nii.gz"}
        refs = {t: torch.from_numpy(masks[t]).float() for t in (1, 5)}
        quiet = VideoPropagationInferer()(video, net, references=refs, entry=entry)
        assert capsys.readouterr().err == ""
        shown = VideoPropagationInferer(show_frames=True)(video, net, references=refs, entry=entry)
    finally:
        torch.set_num_threads(threads)
    err = capsys.readouterr().err
    assert f"frames of clip:   0%|          | 0/{T - 2}" in err
    torch.testing.assert_close(shown, quiet)
