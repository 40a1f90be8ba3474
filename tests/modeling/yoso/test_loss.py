"""Set prediction loss: pairwise costs, matching and losses with hand-computed answers."""
import math

import torch
import torch.nn.functional as F

from fastpan_d2.modeling.yoso.loss import (
    HungarianMatcher,
    SetCriterion,
    dice_loss,
    pairwise_bce_cost,
    pairwise_dice_cost,
    point_sample,
    sample_uncertain_points,
)


def test_point_sample_reads_pixel_centres():
    x = torch.arange(6.0).view(1, 1, 2, 3)
    # pixel (row 1, col 2) centre is at ((2 + 0.5) / 3, (1 + 0.5) / 2)
    coords = torch.tensor([[[2.5 / 3, 0.75], [0.5 / 3, 0.25]]])
    torch.testing.assert_close(point_sample(x, coords), torch.tensor([[[5.0, 0.0]]]))


def test_pairwise_costs_known_answers():
    pred = torch.tensor([[0.0, 0.0], [10.0, -10.0]])  # logits on 2 points
    tgt = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    bce = pairwise_bce_cost(pred, tgt)
    assert torch.allclose(bce[0], torch.full((2,), math.log(2.0)))  # p = 0.5 everywhere
    assert bce[1, 0] < 1e-3 and abs(bce[1, 1] - 5.0) < 1e-3  # (10 + 0) / 2 for the wrong target
    dice = pairwise_dice_cost(pred, tgt)
    # pred 0: p = (.5, .5); vs tgt 0: 1 - (2*.5 + 1) / (1 + 1 + 1) = 1/3; vs empty tgt: 1 - 1/2
    torch.testing.assert_close(dice[0], torch.tensor([1 / 3, 0.5]))
    torch.testing.assert_close(dice_loss(pred, tgt), torch.tensor([1 / 3, 1 - 1 / (1 + 1)]), atol=1e-4, rtol=0)


def test_sample_uncertain_points_prefers_the_boundary():
    torch.manual_seed(0)
    logits = torch.full((1, 1, 8, 8), 10.0)
    logits[..., 4:] = -10.0
    logits[..., 3:5] = 0.0  # uncertain band, columns 3..4 -> x in [3/8, 5/8]
    coords = sample_uncertain_points(logits, 100, 3.0, 0.75)
    assert coords.shape == (1, 100, 2)
    frac_in_band = ((coords[0, :75, 0] >= 3 / 8) & (coords[0, :75, 0] <= 5 / 8)).float().mean()
    assert frac_in_band > 0.9


def _toy():
    """2 GT segments in an 8x8 image: class 1 left half, class 0 right half; 3 predictions."""
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[0, :, :4] = True
    masks[1, :, 4:] = True
    target = {"labels": torch.tensor([1, 0]), "masks": masks}
    big = 8.0
    pred_masks = torch.full((1, 3, 4, 4), -big)  # predictions at 1/2 scale here
    pred_masks[0, 0, :, 2:] = big  # pred 0 = right half -> GT 1
    pred_masks[0, 2, :, :2] = big  # pred 2 = left half -> GT 0
    cls = torch.full((1, 3, 3), -5.0)  # 2 classes + no object
    cls[0, 0, 0] = 5.0
    cls[0, 1, 2] = 5.0  # pred 1 says no object
    cls[0, 2, 1] = 5.0
    return cls, pred_masks, target


def test_matcher_finds_the_obvious_assignment():
    torch.manual_seed(0)
    cls, masks, target = _toy()
    (pi, ti), = HungarianMatcher(num_points=256)(cls, masks, [target])
    assert dict(zip(pi.tolist(), ti.tolist())) == {0: 1, 2: 0}
    # class cost alone would also decide it; mask cost alone too
    (pi, ti), = HungarianMatcher(cost_class=0.0, num_points=256)(cls, masks, [target])
    assert dict(zip(pi.tolist(), ti.tolist())) == {0: 1, 2: 0}
    (pi, ti), = HungarianMatcher(cost_mask=0.0, cost_dice=0.0, num_points=256)(cls, masks, [target])
    assert dict(zip(pi.tolist(), ti.tolist())) == {0: 1, 2: 0}


def test_criterion_values():
    torch.manual_seed(0)
    cls, masks, target = _toy()
    crit = SetCriterion(2, HungarianMatcher(num_points=256), class_weight=2.0, mask_weight=5.0, dice_weight=5.0,
                        no_object_weight=0.1, num_points=256, importance_sample_ratio=0.0)
    losses = crit([(cls, masks)], [target])
    # classification: targets (0, no-object, 1), weights (1, 0.1, 1): weighted mean of the CEs
    ce = F.cross_entropy(cls[0], torch.tensor([0, 2, 1]), reduction="none")
    expected_ce = (ce[0] + 0.1 * ce[1] + ce[2]) / 2.1
    torch.testing.assert_close(losses["loss_ce_s0"], 2.0 * expected_ce)
    # near-perfect masks, uniform points: BCE ~ 3e-4 except in the bilinear edge band, dice small
    assert losses["loss_mask_s0"] < 5.0 * 0.1 and losses["loss_dice_s0"] < 5.0 * 0.1
    # empty masks (every point "off") cost much more
    losses_bad = crit([(cls, torch.full_like(masks, -8.0))], [target])
    assert losses_bad["loss_mask_s0"] > 10 * losses["loss_mask_s0"]
    assert losses_bad["loss_dice_s0"] > 5 * losses["loss_dice_s0"]


def test_every_stage_and_empty_targets():
    cls, masks, target = _toy()
    crit = SetCriterion(2, HungarianMatcher(num_points=64), num_points=64)
    empty = {"labels": torch.zeros(0, dtype=torch.long), "masks": torch.zeros(0, 8, 8, dtype=torch.bool)}
    cls2 = torch.cat([cls, cls]).requires_grad_()
    masks2 = torch.cat([masks, masks]).requires_grad_()
    losses = crit([(cls2, masks2), (cls2, masks2)], [target, empty])
    assert set(losses) == {f"loss_{k}_s{s}" for k in ("ce", "mask", "dice") for s in (0, 1)}
    sum(losses.values()).backward()
    assert masks2.grad[0].abs().sum() > 0  # matched predictions of image 0 get mask gradients
    assert masks2.grad[1].abs().sum() == 0  # image 1 has no segment: no mask loss
    assert cls2.grad[1].abs().sum() > 0  # ... but all its predictions learn "no object"
    # a batch without any segment: mask losses are zero, still differentiable
    losses = crit([(cls[:, :2], masks[:, :2].clone().requires_grad_())], [empty])
    assert losses["loss_mask_s0"].item() == 0.0 and losses["loss_mask_s0"].requires_grad
