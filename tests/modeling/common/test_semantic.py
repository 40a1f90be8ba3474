"""Shared semantic targets / loss / auxiliary head (fastpan_d2.modeling.common.semantic)."""
import math

import pytest
import torch

from fastpan_d2.modeling.common.semantic import AuxiliarySemanticHead, padded_semantic_targets, semantic_loss


def test_semantic_loss_by_hand():
    logits = torch.zeros(1, 3, 1, 2)
    logits[0, 1, 0, 0] = math.log(2.0)  # p(class 1) = 2/4 at pixel 0
    target = torch.tensor([[[1, 255]]])
    assert semantic_loss(logits, target, 255).item() == pytest.approx(math.log(2.0))
    all_ignored = semantic_loss(logits, torch.full((1, 1, 2), 255), 255)
    assert all_ignored.item() == 0.0  # not NaN


def test_padded_semantic_targets_pad_with_ignore():
    t = padded_semantic_targets([{"sem_seg": torch.zeros(2, 3, dtype=torch.long)}], (4, 4), 255, "cpu")
    assert t.shape == (1, 4, 4) and (t[0, :2, :3] == 0).all() and (t[0, 2:] == 255).all()
    assert (t[0, :, 3] == 255).all()


def test_semantic_loss_downsamples_the_target():
    """Per-pixel CE against the mapper's sem_seg, void (255) ignored, at 1/2 scale."""
    sem_seg = torch.full((1, 4, 4), 255, dtype=torch.long)
    sem_seg[0, :2] = 3  # rows 0-1: class 3
    sem_seg[0, 2:, :2] = 7  # rows 2-3, cols 0-1: class 7; rows 2-3, cols 2-3: void
    logits = torch.zeros(1, 9, 2, 2)
    logits[0, 3, 0, :] = 2.0  # top row (class 3): logit 2 on its class
    # bottom-left pixel (class 7): all logits 0 -> CE log 9; bottom-right: void
    p3 = math.exp(2.0) / (math.exp(2.0) + 8)
    expected = (-2 * math.log(p3) + math.log(9.0)) / 3
    assert abs(semantic_loss(logits, sem_seg).item() - expected) < 1e-5
    empty = torch.full((1, 4, 4), 255, dtype=torch.long)
    logits.requires_grad_(True)
    loss = semantic_loss(logits, empty)
    assert loss.item() == 0.0
    loss.backward()  # still part of the graph


def test_auxiliary_head_loss_by_hand():
    """Zero predictor weights and biases: uniform over C classes, so the loss is weight x log C on
    the labelled pixels of the padded target; the padding is ignored."""
    head = AuxiliarySemanticHead(4, num_classes=3, loss_weight=2.0)
    torch.nn.init.zeros_(head.predictor.weight)
    torch.nn.init.zeros_(head.predictor.bias)
    sem = torch.tensor([[0, 1, 255], [2, 2, 0]])
    loss = head(torch.randn(1, 4, 4, 4), [{"sem_seg": sem}], (4, 4))
    assert loss.item() == pytest.approx(2.0 * math.log(3.0), rel=1e-6)
    loss.backward()
    assert head.predictor.weight.grad.abs().sum() > 0
