"""Per-frame deformation of still images into pseudo-videos (STCN's stage 0)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import list_data_collate

from stbv_monai.transforms import (
    RandFrameDeform,
    RandFrameDeformd,
    RandSampleClipd,
    RandSpeckle,
    clip_training_transforms,
    still_clip_transforms,
)

H, W = 64, 80
INSIDE, OUTSIDE = 0.85, 0.15


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _disk(h: int = H, w: int = W, radius: float = 16.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(1, h, w)`` image bright exactly inside a disk, with a smooth gradient outside; the disk mask."""
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    mask = (((yy - h / 2) ** 2 + (xx - w / 2) ** 2) < radius**2).float()
    background = OUTSIDE + 0.1 * (yy / h) * (xx / w)
    return torch.where(mask > 0, torch.tensor(INSIDE), background)[None], mask[None]


def _still_clip(num: int = 3, empty: bool = False) -> dict:
    """A bootstrap clip of a still: ``num`` identical copies, loss mask all ones."""
    image, mask = _disk()
    mask = torch.zeros_like(mask) if empty else mask
    return {"image": image.repeat(num, 1, 1), "label": mask.repeat(num, 1, 1),
            "loss_mask": torch.ones(num, H, W), "source": torch.ones(num, dtype=torch.uint8)}


def _still_video(h: int = 48, w: int = 56) -> dict:
    """A still as :class:`LoadVideoPaird` writes a 1-frame video."""
    image, mask = _disk(h, w, radius=min(h, w) / 4)
    return {"image": image, "label": mask, "labelled_frames": [0], "spacing": (1.0, 1.0),
            "spacing_known": False, "image_path": "still.png", "label_path": "still_mask.png"}


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a & b).sum() / (a | b).sum().clamp_min(1))


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])


def test_frames_are_different_deformations_of_the_still():
    clip = _still_clip()
    out = RandFrameDeformd().set_random_state(0)(clip)
    for key in ("image", "label", "loss_mask"):
        assert out[key].shape == (3, H, W) and out[key].dtype == torch.float32
        assert type(out[key]) is torch.Tensor
    assert torch.equal(out["source"], clip["source"])
    frames, original = out["image"], clip["image"][0]
    for i in range(3):
        assert _corr(frames[i], original) > 0.5
        for j in range(i + 1, 3):
            assert (frames[i] - frames[j]).abs().mean() > 0.01


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_masks_follow_the_image_and_stay_binary(seed):
    out = RandFrameDeformd().set_random_state(seed)(_still_clip())
    for n in range(3):
        valid = out["loss_mask"][n] > 0
        bright = (out["image"][n] > 0.45) & valid
        assert _iou(bright, (out["label"][n] > 0) & valid) > 0.9
    for key in ("label", "loss_mask"):
        assert set(torch.unique(out[key]).tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("mode", ["nearest", "nearest-exact"])
def test_array_transform_shares_one_draw_between_image_and_masks(mode):
    image, mask = _disk()
    deform = RandFrameDeform(rotate=25.0, elastic_magnitude=(0.02, 0.03)).set_random_state(5)
    deform.randomize((H, W))
    frame, (label, ones) = deform(image, [mask, torch.ones_like(mask)], randomize=False)
    assert torch.equal(label, deform.warp(mask, mode))
    assert frame.shape == label.shape == (1, H, W)
    assert _iou(frame[0] > 0.45, label[0] > 0) > 0.9
    assert 0 < float(ones.mean()) < 1  # padding came in
    with pytest.raises(ValueError):
        deform(image[0])


def test_empty_masks_stay_empty():
    out = RandFrameDeformd().set_random_state(0)(_still_clip(empty=True))
    assert not out["label"].any()


def test_deterministic_under_set_random_state():
    a = RandFrameDeformd().set_random_state(7)(_still_clip())
    b = RandFrameDeformd().set_random_state(7)(_still_clip())
    c = RandFrameDeformd().set_random_state(8)(_still_clip())
    for key in ("image", "label", "loss_mask"):
        assert torch.equal(a[key], b[key])
    assert not torch.equal(a["image"], c["image"])


def test_prob_zero_is_identity_and_keep_first_leaves_the_reference():
    clip = _still_clip()
    same = RandFrameDeformd(prob=0.0).set_random_state(0)(clip)
    for key in ("image", "label", "loss_mask"):
        assert torch.equal(same[key], clip[key])
    image, mask = _disk()
    frame, (label,) = RandFrameDeform(prob=0.0)(image, [mask])
    assert torch.equal(frame, image) and torch.equal(label, mask)
    kept = RandFrameDeformd(keep_first=True).set_random_state(0)(clip)
    for key in ("image", "label", "loss_mask"):
        assert torch.equal(kept[key][0], clip[key][0])
        assert not torch.equal(kept[key][1], clip[key][1])


def test_loss_mask_is_zero_where_padding_came_in():
    clip = _still_clip()
    clip["loss_mask"][2] = 0  # a frame without supervision stays without
    deform = RandFrameDeformd(rotate=0.0, translate=0.3, gain=0.0, gamma=(1.0, 1.0), speckle_std=(0.0, 0.0))
    out = deform.set_random_state(3)(clip)
    for n in range(2):
        image, loss = out["image"][n], out["loss_mask"][n]
        assert not loss[image == 0].any()  # all four bilinear neighbours outside: padding
        assert (image[loss > 0] > 0).all()
        assert (loss == 0).float().mean() > 0.02
    assert not out["loss_mask"][2].any()
    missing = RandFrameDeformd().set_random_state(0)({k: v for k, v in clip.items() if k != "loss_mask"})
    assert "loss_mask" not in missing


def test_speckle_is_multiplicative():
    img = torch.cat([torch.zeros(1, 64, 32), torch.full((1, 64, 96), 0.2)], dim=2)
    speckle = RandSpeckle(std=(0.2, 0.2), sigma=1.0).set_random_state(0)
    out = speckle(img)
    assert not out[..., :32].any()  # anechoic stays black
    assert torch.allclose(speckle(3 * img, randomize=False), 3 * out)  # scales with the echo
    factor = out[..., 32:] / 0.2
    assert abs(float(factor.mean()) - 1.0) < 0.05 and abs(float(factor.std()) - 0.2) < 0.02
    assert not torch.equal(speckle(img), out)  # a fresh field per draw


def test_still_clip_matches_the_video_chain_and_collates():
    size = (32, 48)
    video_clip = clip_training_transforms(size, mode="bootstrap").set_random_state(0)(_still_video())
    stills = still_clip_transforms(size).set_random_state(0)
    samples = [stills(_still_video()) for _ in range(2)]
    for out in samples:
        assert set(out) == set(video_clip)
        for key, value in video_clip.items():
            assert type(out[key]) is type(value), key
            if isinstance(value, torch.Tensor):
                assert out[key].shape == value.shape and out[key].dtype == value.dtype, key
        assert out["image"].shape == (3, *size)
        assert torch.equal(out["frame_index"], torch.zeros(3, dtype=torch.int64))
        assert set(torch.unique(out["label"]).tolist()) <= {0.0, 1.0}
        for n in range(3):
            valid = out["loss_mask"][n] > 0
            assert _iou((out["image"][n] > 0.45) & valid, (out["label"][n] > 0) & valid) > 0.85
    again = still_clip_transforms(size).set_random_state(0)(_still_video())
    assert torch.equal(again["image"], samples[0]["image"]) and torch.equal(again["label"], samples[0]["label"])
    batch = list_data_collate(samples)
    assert batch["image"].shape == batch["label"].shape == (2, 3, *size)
    assert batch["source"].shape == (2, 3)


def test_bootstrap_sampler_repeats_a_one_frame_video():
    out = RandSampleClipd(mode="bootstrap").set_random_state(0)(_still_video())
    assert out["image"].shape == (3, 48, 56) and torch.equal(out["source"], torch.ones(3, dtype=torch.uint8))
