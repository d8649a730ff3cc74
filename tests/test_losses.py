"""Losses: bootstrapped cross-entropy, the eq. 4 segmentation loss, space-time consistency (STCS)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from stbv_monai.losses import (
    BootstrappedBCE,
    SegmentationLoss,
    STCSLoss,
    bootstrap_top_p,
    bootstrapped_mean,
    key_similarity,
)

B, N, H, W = 2, 3, 8, 10


def _inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, N, H, W, generator=g).requires_grad_(True)
    target = (torch.rand(B, N, H, W, generator=g) > 0.5).float()
    weight = (torch.rand(B, N, H, W, generator=g) > 0.3).float()
    return logits, target, weight


# ----------------------------------------------------------------------------- bootstrapped CE


@pytest.mark.parametrize(
    "iteration, expected",
    [(0, 1.0), (19_999, 1.0), (20_000, 1.0), (45_000, 0.575), (70_000, 0.15), (150_000, 0.15)],
)
def test_top_p_schedule_follows_stcn(iteration, expected):
    assert bootstrap_top_p(iteration) == pytest.approx(expected)
    assert BootstrappedBCE().top_p(iteration) == pytest.approx(expected)


def test_plain_weighted_bce_before_warm_up():
    logits, target, weight = _inputs()
    loss, p = BootstrappedBCE()(logits, target, weight, iteration=100)
    raw = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    assert p == 1.0
    assert torch.isclose(loss, raw[weight > 0].mean())
    unweighted, _ = BootstrappedBCE()(logits, target, iteration=100)
    assert torch.isclose(unweighted, raw.mean())


def test_bootstrapping_keeps_the_hardest_labelled_pixels():
    logits, target, weight = _inputs(1)
    loss, p = BootstrappedBCE()(logits, target, weight, iteration=100_000)
    raw = F.binary_cross_entropy_with_logits(logits, target, reduction="none")[weight > 0]
    k = int(raw.numel() * 0.15)
    assert p == pytest.approx(0.15)
    assert torch.isclose(loss, raw.topk(k).values.mean())


@pytest.mark.parametrize("iteration", [0, 45_000, 100_000])
def test_weight_zero_pixels_get_exactly_zero_gradient(iteration):
    logits, target, weight = _inputs(2)
    loss, _ = BootstrappedBCE()(logits, target, weight, iteration=iteration)
    loss.backward()
    assert (logits.grad[weight == 0] == 0).all()
    assert (logits.grad[weight > 0] != 0).any()


def test_no_labelled_pixel_gives_a_zero_loss_that_still_backpropagates():
    logits, target, _ = _inputs(3)
    loss, _ = BootstrappedBCE()(logits, target, torch.zeros_like(target), iteration=50_000)
    loss.backward()
    assert loss.item() == 0.0 and (logits.grad == 0).all()


def test_two_class_ce_on_aggregated_logits_equals_bce():
    """STCN's 2-class cross-entropy on soft-aggregated logits [-l, l] is our BCE on 2l, bootstrapping included."""
    logits, target, weight = _inputs(4)
    two_class = torch.stack([-logits, logits], dim=1)  # STCN soft aggregation of one object
    raw = F.cross_entropy(two_class, target.long(), reduction="none")
    ce = bootstrapped_mean(raw, weight, bootstrap_top_p(60_000))
    bce, _ = BootstrappedBCE()(2 * logits, target, weight, iteration=60_000)
    assert torch.isclose(ce, bce, atol=1e-6)
    with pytest.raises(ValueError):
        BootstrappedBCE()(logits, target[:, :2], iteration=0)


# ----------------------------------------------------------------------------- segmentation loss (eq. 4)


def test_segmentation_loss_splits_ground_truth_and_pseudo_frames():
    logits, target, weight = _inputs(5)
    source = torch.tensor([[1, 2, 0], [2, 2, 1]], dtype=torch.uint8)
    total, parts = SegmentationLoss(gt_weight=1.0, pseudo_weight=0.5)(logits, target, source, weight, iteration=0)
    raw = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    frames = source[..., None, None].expand_as(raw)
    gt = raw[(frames == 1) & (weight > 0)].mean()
    pseudo = raw[(frames == 2) & (weight > 0)].mean()
    assert torch.isclose(parts["loss_gt"], gt) and torch.isclose(parts["loss_pseudo"], pseudo)
    assert torch.isclose(total, gt + 0.5 * pseudo)
    assert parts["top_p"] == 1.0 and not parts["loss_gt"].requires_grad
    total.backward()
    assert (logits.grad[0, 2] == 0).all()  # the source-0 frame never contributes
    assert (logits.grad[frames > 0][weight[frames > 0] == 0] == 0).all()


def test_segmentation_loss_without_pseudo_frames():
    logits, target, _ = _inputs(6)
    source = torch.ones(B, N, dtype=torch.uint8)
    total, parts = SegmentationLoss()(logits, target, source, iteration=30_000)
    assert parts["loss_pseudo"].item() == 0.0 and torch.isclose(total, parts["loss_gt"])
    total.backward()
    assert torch.isfinite(logits.grad).all()


# ----------------------------------------------------------------------------- STCS (eq. 6-8)


def _one_hot_keys(h: int, w: int, scale: float = 10.0, batch: int = 2):
    """Anchor keys with a distinct one-hot vector per position; frame t sees the anchor permuted."""
    hw = h * w
    g = torch.Generator().manual_seed(0)
    k_tau = (torch.eye(hw + 1)[:hw] * scale).T.reshape(1, hw + 1, h, w).repeat(batch, 1, 1, 1)
    perm = torch.randperm(hw, generator=g)
    k_t = k_tau.flatten(2)[:, :, perm].reshape(batch, hw + 1, h, w)
    return k_t, k_tau, perm


def test_identical_consecutive_frames_reach_the_lower_bound():
    k_t, k_tau, perm = _one_hot_keys(3, 5)  # h != w
    loss = STCSLoss()(k_t, k_t.clone(), k_tau)
    assert loss.item() < 1e-6  # lower bound 0: every position recovers its anchor match
    torch.testing.assert_close(STCSLoss().targets(k_t, k_tau), perm.expand(2, -1))


def test_shuffled_next_frame_gives_a_much_larger_loss():
    k_t, k_tau, _ = _one_hot_keys(3, 5)
    shuffled = k_t.flatten(2).roll(1, dims=2).reshape_as(k_t)
    same = STCSLoss()(k_t, k_t, k_tau)
    loss = STCSLoss()(k_t, shuffled, k_tau)
    assert loss.item() > 50 and loss.item() > 1e6 * same.item()  # ~ scale^2 = 100 per position


def test_gradients_reach_next_frame_and_anchor_but_not_the_target_frame():
    g = torch.Generator().manual_seed(1)
    k_t, k_t1, k_tau = (torch.randn(2, 8, 4, 6, generator=g).requires_grad_(True) for _ in range(3))
    loss = STCSLoss(weight=0.5)(k_t, k_t1, k_tau)
    loss.backward()
    assert k_t.grad is None  # j* comes from an argmax without gradient
    assert k_t1.grad.abs().sum() > 0 and k_tau.grad.abs().sum() > 0
    with torch.no_grad():  # j* is the same whether or not gradients are tracked
        assert torch.equal(STCSLoss().targets(k_t, k_tau), STCSLoss().targets(k_t.detach(), k_tau.detach()))


@pytest.mark.parametrize("similarity, temperature", [("dot", 1.0), ("dot", 2.0), ("l2", math.sqrt(8))])
def test_stcs_matches_a_direct_computation(similarity, temperature):
    g = torch.Generator().manual_seed(2)
    k_t, k_t1 = torch.randn(2, 8, 3, 4, generator=g), torch.randn(2, 8, 3, 4, generator=g)
    k_tau = torch.randn(2, 8, 5, 2, generator=g)  # the anchor may differ in size
    loss = STCSLoss(weight=2.0, similarity=similarity, temperature=temperature)(k_t, k_t1, k_tau)
    expected = 0.0
    for b in range(2):
        q, q1, m = k_t[b].flatten(1).T, k_t1[b].flatten(1).T, k_tau[b].flatten(1).T  # (positions, C)
        if similarity == "dot":
            s_t, s_t1 = q @ m.T, q1 @ m.T
        else:
            s_t, s_t1 = -torch.cdist(q, m) ** 2, -torch.cdist(q1, m) ** 2
        j_star = s_t.argmax(dim=1)
        logp = torch.log_softmax(s_t1 / temperature, dim=1)
        expected += -logp[torch.arange(len(j_star)), j_star].mean() / 2
    assert torch.isclose(loss, 2.0 * expected, rtol=1e-4)


def test_key_similarity_and_argument_checks():
    q, m = torch.randn(1, 4, 6), torch.randn(1, 4, 7)
    assert key_similarity(q, m).shape == (1, 6, 7)
    with pytest.raises(ValueError):
        key_similarity(q, m, similarity="cosine")
    with pytest.raises(ValueError):
        STCSLoss(temperature=0)
    with pytest.raises(ValueError):
        STCSLoss()(torch.randn(1, 4, 3, 3), torch.randn(1, 4, 3, 2), torch.randn(1, 4, 3, 3))


def test_segmentation_loss_accepts_the_training_wrapper_layout():
    """``ClipTrainingWrapper`` returns logits ``(B, N, 1, H, W)``; source stays ``(B, N)``."""
    logits, target, weight = _inputs(7)
    source = torch.tensor([[1, 2, 2], [2, 0, 1]], dtype=torch.uint8)
    flat, _ = SegmentationLoss()(logits, target, source, weight, iteration=50_000)
    five_d, _ = SegmentationLoss()(logits[:, :, None], target[:, :, None], source, weight[:, :, None], iteration=50_000)
    assert torch.isclose(flat, five_d)
