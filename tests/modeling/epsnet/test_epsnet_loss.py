"""EPSNet targets and losses with hand-computed answers."""
import math

import pytest
import torch
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.matcher import Matcher
from detectron2.structures import BitMasks, Boxes, Instances

from fastpan_d2.data.categories import PanopticCategories
from fastpan_d2.modeling.epsnet.loss import (
    box_crop_masks,
    downsample_masks,
    epsnet_losses,
    mask_loss,
    match_anchors,
    semantic_targets,
    stuff_lookup,
)

LN2 = math.log(2.0)


def _instances(boxes, classes, masks, size):
    inst = Instances(size)
    inst.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).view(-1, 4))
    inst.gt_classes = torch.tensor(classes, dtype=torch.long)
    inst.gt_masks = BitMasks(masks)
    return inst


def test_match_anchors_thresholds_and_low_quality():
    anchors = Boxes(torch.tensor([
        [0.0, 0.0, 10.0, 10.0],    # IoU 1 with GT 0 -> positive
        [0.0, 0.0, 10.0, 8.0],     # IoU 0.8 -> positive
        [0.0, 0.0, 10.0, 4.5],     # IoU 0.45 -> ignored
        [0.0, 0.0, 10.0, 3.0],     # IoU 0.3 -> negative
        [50.0, 50.0, 60.0, 60.0],  # IoU 0.3 with GT 1, its best anchor -> positive (low quality)
    ]))
    gt = _instances([[0, 0, 10, 10], [50, 50, 60, 53]], [2, 4], torch.zeros(2, 64, 64, dtype=torch.bool), (64, 64))
    empty = _instances([], [], torch.zeros(0, 64, 64, dtype=torch.bool), (64, 64))
    idx, labels = match_anchors(anchors, [gt, empty], Matcher([0.4, 0.5], [0, -1, 1], True))
    assert labels[0].tolist() == [1, 1, -1, 0, 1]
    assert idx[0, [0, 1, 4]].tolist() == [0, 0, 1]
    assert labels[1].tolist() == [0, 0, 0, 0, 0]  # no things: every anchor is background


def test_downsample_and_crop():
    m = torch.zeros(1, 6, 8, dtype=torch.bool)
    m[0, 0:4, 0:4] = True  # exactly the top-left 2x2 cells at stride 2
    m[0, 4, 6] = True  # a quarter of one cell: below 0.5
    small = downsample_masks(m, (8, 8), 2)
    assert small.shape == (1, 4, 4)
    expected = torch.zeros(4, 4)
    expected[:2, :2] = 1
    assert torch.equal(small[0], expected)
    crop = box_crop_masks(torch.tensor([[2.0, 0.0, 6.0, 4.0]]), 4, 4, 2.0)
    # cell centres at 1, 3, 5, 7: x in [2, 6) -> cells 1, 2; y in [0, 4) -> cells 0, 1
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[0:2, 1:3] = True
    assert torch.equal(crop[0], expected)


def test_mask_loss_is_bce_inside_box_divided_by_box_area():
    # Prototypes all 0 -> sigmoid = 0.5 everywhere, BCE = ln 2 per cell whatever the target.
    protos = torch.zeros(4, 8, 8)
    coefs = torch.rand(2, 4)
    gt = torch.zeros(2, 8, 8)
    boxes = torch.tensor([[0.0, 0.0, 16.0, 8.0], [8.0, 8.0, 16.0, 16.0]])  # stride 4: 4x2 and 2x2 cells
    loss = mask_loss(protos, coefs, gt, boxes, 4.0)
    # each GT: (cells inside · ln 2) / area in cells = ln 2
    assert loss.item() == pytest.approx(2 * LN2, rel=1e-5)
    # A perfect, confident prediction inside the box costs ~0, whatever happens outside.
    protos = torch.full((1, 8, 8), -20.0)
    protos[0, 0:2, 0:4] = 20.0
    gt = torch.zeros(1, 8, 8)
    gt[0, 0:2, 0:4] = 1.0
    loss = mask_loss(protos, torch.ones(1, 1), gt, boxes[:1], 4.0)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    # Wrong outside the box does not count (cropping by the GT box).
    protos[0, 5:, 5:] = 20.0
    assert mask_loss(protos, torch.ones(1, 1), gt, boxes[:1], 4.0).item() == pytest.approx(0.0, abs=1e-6)


def test_semantic_targets_map_things_to_other():
    # classes 0..4 things, 5..8 stuff (the synthetic layout)
    cats = PanopticCategories(num_classes=9, thing_ids=[0, 1, 2, 3, 4], stuff_ids=[5, 6, 7, 8])
    lut = stuff_lookup(cats)
    assert lut.tolist() == [4, 4, 4, 4, 4, 0, 1, 2, 3]
    sem = torch.tensor([[0, 5, 8], [255, 3, 6]])
    assert semantic_targets(sem, lut, 255).tolist() == [[4, 0, 3], [255, 4, 1]]


def _setup_loss_case():
    # One image 16x16, one GT thing of class 1 covering x in [0, 8), y in [0, 8).
    anchors = torch.tensor([[0.0, 0.0, 8.0, 8.0], [8.0, 8.0, 16.0, 16.0], [0.0, 0.0, 8.0, 6.0]])
    masks = torch.zeros(1, 16, 16, dtype=torch.bool)
    masks[0, :8, :8] = True
    gt = _instances([[0, 0, 8, 8]], [1], masks, (16, 16))
    idx, labels = match_anchors(Boxes(anchors), [gt], Matcher([0.4, 0.5], [0, -1, 1], True))
    assert labels[0].tolist() == [1, 0, 1]  # IoU 1, 0, 0.75
    return anchors, gt, idx, labels


def test_epsnet_losses_known_values():
    anchors, gt, idx, labels = _setup_loss_case()
    b2b = Box2BoxTransform(weights=(10.0, 10.0, 5.0, 5.0))
    pred_deltas = b2b.get_deltas(anchors, gt.gt_boxes.tensor.expand(3, 4))[None].clone()
    pred_cls = torch.full((1, 3, 2), -100.0)
    pred_cls[0, [0, 2], 1] = 100.0  # confident and right
    protos = torch.zeros(1, 2, 4, 4)
    sem_logits = torch.zeros(1, 3, 4, 4)  # uniform over 3 classes: CE = ln 3 per valid pixel
    sem_targets = torch.zeros(1, 16, 16, dtype=torch.long)
    sem_targets[0, :4] = 255
    losses = epsnet_losses(
        anchors=anchors, matched_idxs=idx, anchor_labels=labels, pred_cls=pred_cls, pred_deltas=pred_deltas,
        pred_coefs=torch.zeros(1, 3, 2), protos=protos, sem_logits=sem_logits, gt_instances=[gt],
        sem_targets=sem_targets, box2box=b2b, num_classes=2, padded_size=(16, 16),
    )
    assert losses["loss_cls"].item() == pytest.approx(0.0, abs=1e-6)
    assert losses["loss_box"].item() == pytest.approx(0.0, abs=1e-6)
    assert losses["loss_mask"].item() == pytest.approx(LN2, rel=1e-5)  # mean over the 2 positives
    assert losses["loss_sem"].item() == pytest.approx(math.log(3.0), rel=1e-5)

    # Box: one positive off by delta 1 in dx (|d| = 1 >= beta=1: smooth-L1 = 0.5), normalised by 2
    pred_deltas[0, 0, 0] += 1.0
    # Class: logits 0 on both classes for positive anchor 2: focal terms 0.25·0.25·ln2 (target 1)
    # and 0.75·0.25·ln2 (target 0); /2 positives.
    pred_cls[0, 2] = 0.0
    losses = epsnet_losses(
        anchors=anchors, matched_idxs=idx, anchor_labels=labels, pred_cls=pred_cls, pred_deltas=pred_deltas,
        pred_coefs=torch.zeros(1, 3, 2), protos=protos, sem_logits=sem_logits, gt_instances=[gt],
        sem_targets=sem_targets, box2box=b2b, num_classes=2, padded_size=(16, 16),
    )
    assert losses["loss_box"].item() == pytest.approx(0.5 / 2, rel=1e-5)
    assert losses["loss_cls"].item() == pytest.approx((0.0625 + 0.1875) * LN2 / 2, rel=1e-4)


def test_epsnet_losses_no_things_and_all_ignored():
    empty = _instances([], [], torch.zeros(0, 16, 16, dtype=torch.bool), (16, 16))
    anchors = torch.tensor([[0.0, 0.0, 8.0, 8.0], [8.0, 8.0, 16.0, 16.0]])
    idx, labels = match_anchors(Boxes(anchors), [empty], Matcher([0.4, 0.5], [0, -1, 1], True))
    protos = torch.zeros(1, 2, 4, 4, requires_grad=True)
    losses = epsnet_losses(
        anchors=anchors, matched_idxs=idx, anchor_labels=labels, pred_cls=torch.zeros(1, 2, 2),
        pred_deltas=torch.zeros(1, 2, 4), pred_coefs=torch.zeros(1, 2, 2), protos=protos,
        sem_logits=torch.zeros(1, 3, 4, 4), gt_instances=[empty],
        sem_targets=torch.full((1, 16, 16), 255, dtype=torch.long), box2box=Box2BoxTransform((10, 10, 5, 5)),
        num_classes=2, padded_size=(16, 16),
    )
    # all anchors negative: focal of logit 0 with target 0 = 0.75 · 0.25 · ln2 per (anchor, class)
    assert losses["loss_cls"].item() == pytest.approx(4 * 0.1875 * LN2, rel=1e-4)
    assert losses["loss_box"].item() == 0.0 and losses["loss_mask"].item() == 0.0
    assert losses["loss_sem"].item() == 0.0  # no valid pixel: 0, not NaN
    assert all(torch.isfinite(v) for v in losses.values())
