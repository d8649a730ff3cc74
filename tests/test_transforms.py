"""Training transforms: clip sampling, weak augmentation, source-dependent strong augmentation, CutMix."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import default_collate

from stbv_monai.errors import InputError
from stbv_monai.transforms import (
    STRONG_OPS,
    RandCutOut,
    RandGrayColorJitter,
    RandIsotropicGaussianSmooth,
    RandPseudoCutMix,
    RandPseudoCutMixd,
    RandStrongAugment,
    RandSampleClip,
    RandSampleClipd,
    SampleSTCSTriplet,
    SourceDependentAugmentd,
    clip_training_transforms,
    derive_source,
    sample_box,
    validation_resize,
    weak_augmentation,
)

T, H, W = 24, 40, 48


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _video(t: int = T, labelled=(4, 17), source=None, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    d = {
        "image": rng.random((t, H, W)).astype(np.float32),
        "label": (rng.random((t, H, W)) > 0.5).astype(np.uint8),
        "labelled_frames": list(labelled),
    }
    if source is not None:
        d["source"] = np.asarray(source, dtype=np.uint8)
    return d


def _square_video(t: int = 6) -> dict:
    """Dark frames with a bright square; the label is the square."""
    image = np.full((t, 64, 64), 0.05, np.float32)
    label = np.zeros((t, 64, 64), np.uint8)
    image[:, 20:44, 10:30] = 0.95
    label[:, 20:44, 10:30] = 1
    return {"image": image, "label": label, "labelled_frames": [1, 4]}


# ----------------------------------------------------------------------------- clip sampling


@pytest.mark.parametrize("mode", ["bootstrap", "window"])
@pytest.mark.parametrize("stcs", [False, True])
def test_sample_clip_shapes_and_dtypes(mode, stcs):
    out = RandSampleClipd(mode=mode, stcs=stcs).set_random_state(0)(_video())
    assert out["image"].shape == out["label"].shape == out["loss_mask"].shape == (3, H, W)
    assert out["image"].dtype == out["label"].dtype == out["loss_mask"].dtype == torch.float32
    assert out["source"].shape == (3,) and out["source"].dtype == torch.uint8
    assert out["frame_index"].shape == (3,) and out["frame_index"].dtype == torch.int64
    if stcs:
        assert out["stcs_image"].shape == (3, H, W) and out["stcs_index"].shape == (3,)
    else:
        assert "stcs_image" not in out


def test_sample_clip_slices_the_video():
    video = _video(source=[2] * T)
    out = RandSampleClipd(stcs=True).set_random_state(3)(video)
    idx = out["frame_index"].numpy()
    np.testing.assert_array_equal(out["image"].numpy(), video["image"][idx])
    np.testing.assert_array_equal(out["label"].numpy(), video["label"][idx])
    np.testing.assert_array_equal(out["stcs_image"].numpy(), video["image"][out["stcs_index"].numpy()])


def test_bootstrap_picks_only_labelled_frames_and_repeats_one():
    sampler = RandSampleClip(num_frames=3, mode="bootstrap").set_random_state(0)
    source = derive_source(T, [4, 17])
    orders = set()
    for _ in range(300):
        idx = sampler(source)
        assert set(idx.tolist()) == {4, 17}  # both labelled frames, nothing else
        assert len(idx) == 3  # so exactly one is repeated
        orders.add(tuple(idx.tolist()))
    assert len(orders) == 6  # every ordering with either frame repeated occurs


@pytest.mark.parametrize("labelled", [[7], [4, 17], [0, 3, 9, 15, 23]], ids=["1", "2", "5"])
def test_bootstrap_makes_three_frame_clips_from_any_number_of_labelled_frames(labelled):
    """One labelled frame: the same frame three times (STCN's static-image case); five: three distinct ones."""
    sampler = RandSampleClip(num_frames=3, mode="bootstrap").set_random_state(0)
    source = derive_source(T, labelled)
    seen = set()
    for _ in range(200):
        idx = sampler(source).tolist()
        assert len(idx) == 3 and set(idx) <= set(labelled)
        assert len(set(idx)) == min(len(labelled), 3)  # as many distinct frames as there are, up to 3
        seen |= set(idx)
    assert seen == set(labelled)  # every labelled frame is used


def test_bootstrap_ignores_pseudo_frames():
    source = np.full(T, 2, np.uint8)
    source[[2, 9]] = 1
    sampler = RandSampleClip(mode="bootstrap").set_random_state(1)
    assert all(set(sampler(source).tolist()) <= {2, 9} for _ in range(100))


@pytest.mark.parametrize("max_skip", [1, 3, 7])
def test_window_respects_max_skip_and_skips_unlabelled_frames(max_skip):
    rng = np.random.default_rng(max_skip)
    source = rng.choice([0, 1, 2], size=60, p=[0.3, 0.1, 0.6]).astype(np.uint8)
    source[10:13] = 2  # at least one valid chain for max_skip = 1
    sampler = RandSampleClip(num_frames=3, mode="window", max_skip=max_skip).set_random_state(0)
    for _ in range(300):
        idx = sampler(source)
        assert (source[idx] > 0).all()
        steps = np.diff(idx)
        assert (steps >= 1).all() and (steps <= max_skip).all()


def test_window_reverse_and_fallback():
    source = np.ones(30, np.uint8)
    rev = RandSampleClip(mode="window", max_skip=4, reverse_prob=1.0).set_random_state(0)
    assert all((np.diff(rev(source)) < 0).all() for _ in range(50))
    lonely = np.zeros(30, np.uint8)
    lonely[[5, 20]] = 2  # no 3-frame chain within max_skip: repeats, still never a source-0 frame
    idx = RandSampleClip(mode="window", max_skip=4).set_random_state(0)(lonely)
    assert set(idx.tolist()) <= {5, 20} and len(set(idx.tolist())) == 1


def test_stcs_triplet_is_a_consecutive_pair_and_a_distinct_anchor():
    sampler = SampleSTCSTriplet(stcs_range=3).set_random_state(0)
    anchors = set()
    for _ in range(400):
        t, t1, tau = sampler(T).tolist()
        assert t1 == t + 1 and tau not in (t, t1) and 0 <= tau < T
        assert min(abs(tau - t), abs(tau - t1)) <= 3
        anchors.add(tau - t)
    assert {-3, -1, 2, 4} <= anchors
    whole = SampleSTCSTriplet().set_random_state(0)
    assert max(abs(whole(T)[2] - whole._indices[0]) for _ in range(200)) > 10


def test_source_derivation_and_loss_mask():
    out = RandSampleClipd(mode="window", max_skip=30).set_random_state(0)(_video(source=[0] * 5 + [1] + [2] * 18))
    assert (out["source"] > 0).all()
    full = RandSampleClipd(mode="window", full_supervision=True).set_random_state(0)(_video())
    assert (full["source"] == 1).all() and (full["loss_mask"] == 1).all()
    np.testing.assert_array_equal(derive_source(5, [0, 3]), [1, 0, 0, 1, 0])
    # a pixel-level ignore map from the pseudo-labeller is sliced and kept
    video = _video(source=[2] * T)
    video["loss_mask"] = np.ones((T, H, W), np.float32)
    video["loss_mask"][:, :10] = 0
    out = RandSampleClipd().set_random_state(0)(video)
    assert (out["loss_mask"][:, :10] == 0).all() and (out["loss_mask"][:, 10:] == 1).all()


def test_bootstrap_loss_mask_covers_labelled_frames_only():
    # a hand-made 'source' with an unlabelled frame in a window clip gives a zero loss mask there
    clip = RandSampleClipd(mode="window", max_skip=2).set_random_state(0)
    video = _video(source=[1, 0, 2] * (T // 3))
    for seed in range(20):
        out = clip.set_random_state(seed)(video)
        for n in range(3):
            expected = float(out["source"][n] > 0)
            assert (out["loss_mask"][n] == expected).all()


@pytest.mark.parametrize(
    "video, kwargs",
    [
        ({"image": np.zeros((5, 8, 8), np.float32)}, {}),  # no labelled_frames, no source
        (_video(labelled=(0, T)), {}),  # index outside the video
        (_video(source=[3] * T), {}),  # bad source value
        (_video(source=[2] * T), {"mode": "bootstrap"}),  # no ground-truth frame to bootstrap from
    ],
)
def test_bad_samples_raise_input_error(video, kwargs):
    with pytest.raises(InputError):
        RandSampleClipd(allow_missing_keys=True, **kwargs)(video)


# ----------------------------------------------------------------------------- weak augmentation


def test_weak_augmentation_keeps_image_and_label_aligned():
    aug = weak_augmentation(32, scale=(0.6, 1.0))
    sampler = RandSampleClipd(mode="bootstrap")
    for seed in range(25):
        clip = aug.set_random_state(seed)(sampler.set_random_state(seed)(_square_video()))
        assert clip["image"].shape == clip["label"].shape == clip["loss_mask"].shape == (3, 32, 32)
        assert set(clip["label"].unique().tolist()) <= {0.0, 1.0}
        assert set(clip["loss_mask"].unique().tolist()) <= {0.0, 1.0}
        bright = clip["image"] > 0.5
        lab = clip["label"] > 0.5
        iou = (bright & lab).sum() / (bright | lab).sum()
        assert iou > 0.85, f"seed {seed}: label drifted off the square (IoU {iou:.2f})"


def test_weak_crop_is_per_frame_and_flip_is_shared():
    video = _square_video()
    clip = RandSampleClipd(mode="bootstrap").set_random_state(0)(video)
    twins = [(a, b) for a in range(3) for b in range(a + 1, 3) if clip["frame_index"][a] == clip["frame_index"][b]]
    assert twins
    a, b = twins[0]
    out = weak_augmentation(32, scale=(0.6, 0.9)).set_random_state(0)(clip)
    assert not torch.equal(out["image"][a], out["image"][b])  # the repeated frame got its own crop
    no_crop = weak_augmentation(64, scale=(1.0, 1.0))
    flipped = set()
    for seed in range(12):
        out = no_crop.set_random_state(seed)(clip)
        assert torch.equal(out["image"][0], out["image"][1]) and torch.equal(out["image"][1], out["image"][2])
        flipped.add(bool(out["label"][0, 30, 40] == 1))  # square (columns 10-29) mirrored to 34-53
    assert flipped == {True, False}


def test_weak_augmentation_crops_stcs_frames_together():
    video = _square_video()
    clip = RandSampleClipd(mode="bootstrap", stcs=True).set_random_state(0)(video)
    out = weak_augmentation(32, scale=(0.6, 0.9)).set_random_state(5)(clip)
    s = out["stcs_image"]
    assert s.shape == (3, 32, 32)
    assert torch.equal(s[0], s[1]) and torch.equal(s[1], s[2])  # identical input frames, one shared crop


def test_validation_resize_is_deterministic():
    video = _video()
    a = validation_resize((32, 24))(video)
    b = validation_resize((32, 24))(video)
    assert a["image"].shape == a["label"].shape == (T, 32, 24)
    assert torch.equal(a["image"], b["image"]) and set(a["label"].unique().tolist()) <= {0.0, 1.0}
    assert type(a["image"]) is torch.Tensor


def test_training_chain_is_deterministic_under_set_random_state():
    video = _video(source=[1] + [2] * (T - 1))
    outs = []
    for _ in range(2):
        chain = clip_training_transforms(32, mode="window", stcs=True, sda=True).set_random_state(42)
        outs.append([chain(video) for _ in range(3)])
    for x, y in zip(*outs):
        for key in ("image", "label", "loss_mask", "frame_index", "stcs_image", "stcs_index", "strong_ops"):
            assert torch.equal(x[key], y[key]), key
    other = clip_training_transforms(32, mode="window", stcs=True, sda=True).set_random_state(7)(video)
    assert not torch.equal(other["image"], outs[0][0]["image"])


# ----------------------------------------------------------------------------- strong augmentation / SDA


def test_strong_augment_array_shapes_and_range():
    frame = torch.rand(20, 30)
    aug = RandStrongAugment(jitter_prob=1, blur_prob=1, cutout_prob=1).set_random_state(0)
    out = aug(frame)
    assert out.shape == (20, 30) and out.dtype == torch.float32
    assert aug(frame[None]).shape == (1, 20, 30)
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    assert all(aug.applied.values()) and aug.cutout_box is not None


def test_jitter_is_brightness_and_mean_preserving_contrast():
    img = torch.linspace(0.2, 0.6, 100).reshape(1, 10, 10)
    bright = RandGrayColorJitter(prob=1.0, brightness=0.5, contrast=0.0).set_random_state(0)
    out = bright(img)
    ratio = out / img
    assert torch.allclose(ratio, ratio.flatten()[0].expand_as(ratio), atol=1e-5)  # one factor
    assert 0.5 <= float(ratio.flatten()[0]) <= 1.5
    contrast = RandGrayColorJitter(prob=1.0, brightness=0.0, contrast=0.5).set_random_state(0)
    assert torch.isclose(contrast(img).mean(), img.mean(), atol=1e-5)


def test_blur_sigma_is_isotropic_and_cutout_box_follows_st_plus_plus():
    blur = RandIsotropicGaussianSmooth(prob=1.0).set_random_state(0)
    for _ in range(10):
        blur.randomize()
        assert blur.x == blur.y and 0.1 <= blur.x <= 2.0
    rng = np.random.RandomState(0)
    areas = []
    for _ in range(300):
        rows, cols = sample_box(rng, 100, 80)
        h, w = rows.stop - rows.start, cols.stop - cols.start
        assert 0 <= rows.start and rows.stop <= 100 and 0 <= cols.start and cols.stop <= 80
        areas.append(h * w / 8000)
    assert 0.015 <= min(areas) and max(areas) <= 0.41
    cut = RandCutOut(prob=1.0).set_random_state(0)
    out = cut(torch.zeros(1, 50, 50))
    rows, cols = cut.box
    assert (out[0, rows, cols] > 0).float().mean() > 0.95
    assert torch.isclose(out.sum(), out[0, rows, cols].sum())


def _sda_clip(source=(1, 2, 2)) -> dict:
    n = len(source)
    return {
        "image": torch.rand(n, 32, 32) * 0.8 + 0.1,
        "label": torch.ones(n, 32, 32),
        "source": torch.tensor(source, dtype=torch.uint8),
        "loss_mask": torch.ones(n, 32, 32),
    }


def test_sda_strong_transforms_touch_pseudo_frames_only():
    sda = SourceDependentAugmentd().set_random_state(0)
    draws = 300
    ops = torch.zeros(len(STRONG_OPS))
    any_strong = 0
    for _ in range(draws):
        clip = _sda_clip((1, 2, 0, 2))
        out = sda(clip)
        for n in (0, 2):  # ground truth and unlabelled frames: untouched, bit for bit
            assert not out["strong_applied"][n]
            assert torch.equal(out["image"][n], clip["image"][n])
        for n in (1, 3):
            ops += out["strong_ops"][n].float()
            any_strong += int(out["strong_applied"][n])
            assert torch.equal(out["image"][n], clip["image"][n]) != bool(out["strong_applied"][n])
        assert torch.equal(out["label"], clip["label"])
    freq = ops / (2 * draws)
    expected = torch.tensor([0.8, 0.5, 0.5])
    assert torch.allclose(freq, expected, atol=0.07), freq
    assert abs(any_strong / (2 * draws) - (1 - 0.2 * 0.5 * 0.5)) < 0.04


def test_cutout_region_is_zeroed_in_loss_mask():
    sda = SourceDependentAugmentd(jitter_prob=0.0, blur_prob=0.0, cutout_prob=1.0).set_random_state(1)
    for _ in range(20):
        clip = _sda_clip((1, 2, 2))
        out = sda(clip)
        assert (out["loss_mask"][0] == 1).all()  # ground-truth frame keeps its full mask
        for n in (1, 2):
            hole = out["loss_mask"][n] == 0
            assert 0.015 * 32 * 32 <= hole.sum() <= 0.41 * 32 * 32
            changed = out["image"][n] != clip["image"][n]
            assert not changed[~hole].any()  # only the hole changed in the image
            rows, cols = torch.nonzero(hole, as_tuple=True)  # the hole is one rectangle
            assert hole.sum() == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)


def test_sda_disabled_is_identity():
    clip = _sda_clip((2, 2, 2))
    out = SourceDependentAugmentd(enabled=False).set_random_state(0)(clip)
    assert torch.equal(out["image"], clip["image"]) and torch.equal(out["loss_mask"], clip["loss_mask"])
    assert not out["strong_applied"].any() and out["strong_ops"].shape == (3, 3)


# ----------------------------------------------------------------------------- CutMix


def _batch(sources, n: int = 3, size: int = 24) -> dict:
    b = len(sources)
    ids = torch.arange(b, dtype=torch.float32).reshape(b, 1, 1, 1)
    return {
        "image": ids.expand(b, n, size, size) + 0.5,  # each clip has its own constant image
        "label": (ids.expand(b, n, size, size) + 10).clone(),  # and its own label value
        "loss_mask": (ids.expand(b, n, size, size) + 20).clone(),
        "source": torch.tensor(sources, dtype=torch.uint8),
    }


def test_cutmix_pastes_image_label_and_mask_together_between_pseudo_frames_only():
    sources = [[1, 2, 2], [2, 2, 1], [2, 0, 2], [1, 1, 1]]
    mix = RandPseudoCutMixd(prob=1.0).set_random_state(0)
    seen_mix = 0
    for _ in range(30):
        batch = _batch(sources)
        out = mix(batch)
        partner, applied = out["cutmix_partner"], out["cutmix_applied"]
        assert partner[3] == -1 and not applied[3].any()  # a clip without pseudo frames never mixes
        for b in range(4):
            for n in range(3):
                changed = out["image"][b, n] != batch["image"][b, n]
                assert torch.equal(changed, out["label"][b, n] != batch["label"][b, n])
                assert torch.equal(changed, out["loss_mask"][b, n] != batch["loss_mask"][b, n])
                if not applied[b, n]:
                    assert not changed.any()
                    continue
                p = int(partner[b])
                assert sources[b][n] == 2 and sources[p][n] == 2 and p != b
                assert changed.any() and (out["image"][b, n][changed] == p + 0.5).all()
                assert (out["label"][b, n][changed] == p + 10).all()
                seen_mix += 1
    assert seen_mix > 20


def test_cutmix_probability_batch_size_and_determinism():
    sources = [[2, 2, 2]] * 5
    a = RandPseudoCutMixd(prob=0.5).set_random_state(3)(_batch(sources))
    b = RandPseudoCutMixd(prob=0.5).set_random_state(3)(_batch(sources))
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["cutmix_partner"], b["cutmix_partner"])
    single = RandPseudoCutMixd(prob=1.0).set_random_state(0)(_batch([[2, 2, 2]]))
    assert not single["cutmix_applied"].any()
    mixer = RandPseudoCutMix(prob=0.3).set_random_state(0)
    rate = np.mean([(mixer.randomize(np.full((8, 3), 2), (16, 16)) or mixer.partner >= 0).mean() for _ in range(200)])
    assert abs(rate - 0.3) < 0.05


def test_collated_training_batch_goes_through_cutmix():
    chain = clip_training_transforms(32, mode="window", stcs=True, sda=True).set_random_state(0)
    batch = default_collate([chain(_video(source=[1] + [2] * (T - 1), seed=s)) for s in range(3)])
    assert batch["image"].shape == (3, 3, 32, 32) and batch["source"].shape == (3, 3)
    out = RandPseudoCutMixd(prob=1.0).set_random_state(0)(batch)
    assert out["image"].shape == (3, 3, 32, 32) and out["cutmix_applied"].shape == (3, 3)


def test_clips_from_the_video_dataset_collate_into_a_batch(disc_dataset):
    """End to end with the data layer: datalist -> cached videos -> clips -> DataLoader batch."""
    from monai.data import DataLoader

    from stbv_monai.data import load_datalist, video_dataset

    entries = load_datalist(disc_dataset, "training")
    chain = clip_training_transforms(32, mode="bootstrap", stcs=True)
    loader = DataLoader(video_dataset(entries, chain), batch_size=3, num_workers=0)
    batch = next(iter(loader))
    assert batch["image"].shape == batch["label"].shape == batch["loss_mask"].shape == (3, 3, 32, 32)
    assert batch["stcs_image"].shape == (3, 3, 32, 32) and batch["source"].shape == (3, 3)
    assert (batch["source"] == 1).all() and set(batch["frame_index"].flatten().tolist()) <= {1, 6}


def test_videos_with_1_2_and_5_labelled_frames_share_a_batch(tmp_path):
    """The teacher's loader batches videos whose labelled-frame lists differ in length (it used to fail to collate)."""
    from conftest import write_two_site_dataset
    from stbv_monai.data import load_datalist
    from stbv_monai.data.loaders import clip_loader

    entries = load_datalist(write_two_site_dataset(tmp_path), "training")
    assert sorted(len(e["labelled_frames"]) for e in entries) == [1, 2, 2, 5]
    for mode in ("bootstrap", "window"):
        loader = clip_loader(entries, clip_training_transforms(32, mode=mode, stcs=True), batch_size=4, seed=0)
        batch = next(iter(loader))
        assert batch["image"].shape == batch["loss_mask"].shape == (4, 3, 32, 32) and batch["source"].shape == (4, 3)
        assert "labelled_frames" not in batch and sorted(batch["id"]) == sorted(e["id"] for e in entries)
        if mode == "bootstrap":  # ground-truth frames only, from each video's own labelled frames
            assert (batch["source"] == 1).all()
            by_id = {e["id"]: set(e["labelled_frames"]) for e in entries}
            for vid, idx in zip(batch["id"], batch["frame_index"].tolist()):
                assert set(idx) <= by_id[vid]
