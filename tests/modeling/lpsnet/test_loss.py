"""Known-answer tests of LPSNet's box and border-ness losses."""
import math

import pytest
import torch

from fastpan_d2.modeling.lpsnet.loss import borderness_loss, box_loss, ltrb_to_boxes


def test_ltrb_to_boxes():
    boxes = ltrb_to_boxes(torch.tensor([[10.0, 20.0]]), torch.tensor([[1.0, 2.0, 3.0, 4.0]]))
    assert boxes.tolist() == [[9, 18, 13, 24]]


@pytest.mark.parametrize("kind", ["iou", "giou"])
def test_box_loss_perfect_prediction_is_zero(kind):
    t = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    assert box_loss(t.clone(), t, torch.ones(1), kind).item() == pytest.approx(0.0, abs=1e-6)


def test_box_loss_known_values():
    pred = torch.tensor([[1.0, 1.0, 1.0, 1.0]])  # 2x2 box around the location
    tgt = torch.tensor([[2.0, 2.0, 2.0, 2.0]])  # 4x4 box around it: IoU = 4/16, enclosing = target
    assert box_loss(pred, tgt, torch.ones(1), "giou").item() == pytest.approx(0.75, rel=1e-5)
    assert box_loss(pred, tgt, torch.ones(1), "iou").item() == pytest.approx(-math.log(5 / 17), rel=1e-5)


def test_box_loss_is_weighted_by_quality_target():
    pred = torch.tensor([[1.0, 1.0, 1.0, 1.0], [2.0, 2.0, 2.0, 2.0]])
    tgt = torch.tensor([[2.0, 2.0, 2.0, 2.0], [2.0, 2.0, 2.0, 2.0]])
    w = torch.tensor([0.25, 0.75])
    assert box_loss(pred, tgt, w, "giou").item() == pytest.approx(0.25 * 0.75 / 1.0, rel=1e-5)


def test_box_loss_without_positives_is_zero_with_gradient_path():
    pred = torch.zeros(0, 4, requires_grad=True)
    loss = box_loss(pred, torch.zeros(0, 4), torch.zeros(0))
    assert loss.item() == 0.0
    loss.backward()


def test_borderness_loss_balances_positives_and_negatives():
    logits = torch.zeros(5)
    target = torch.tensor([0.5, 1.0, 0.0, 0.0, 0.0])
    positive = torch.tensor([True, True, False, False, False])
    # BCE at logit 0 is log 2 whatever the target.
    assert borderness_loss(logits, target, positive).item() == pytest.approx(2 * math.log(2), rel=1e-6)
    assert borderness_loss(logits, target, positive, on_negatives=False).item() == pytest.approx(math.log(2))
    # A confident, correct prediction costs ~ the target's entropy only.
    logits = torch.tensor([0.0, 20.0, -20.0, -20.0, -20.0])
    assert borderness_loss(logits, target, positive).item() == pytest.approx(math.log(2) / 2, rel=1e-4)
