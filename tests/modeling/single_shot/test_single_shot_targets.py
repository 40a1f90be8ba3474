"""Known-answer tests of the centre / semantic targets and losses and of the centre-accuracy tool."""

import pytest
import torch
from detectron2.structures import BitMasks, Instances

from fastpan_d2.modeling.single_shot.center_accuracy import same_class_overlap_accuracy
from fastpan_d2.modeling.single_shot.targets import (
    batch_center_targets,
    center_loss,
    center_offset_targets,
    pixel_centers,
)


def test_pixel_centers():
    c = pixel_centers(2, 3)
    assert c.shape == (2, 2, 3)
    assert c[:, 1, 2].tolist() == [2.5, 1.5]


def test_center_offsets_by_hand():
    masks = torch.zeros(2, 4, 6, dtype=torch.bool)
    masks[0, 0:2, 0:2] = True  # box [0, 0, 2, 2], centre (1, 1)
    masks[1, 1:4, 3:6] = True
    masks[1, 1, 3] = False  # L-shaped; box still [3, 1, 6, 4], centre (4.5, 2.5)
    boxes = BitMasks(masks).get_bounding_boxes().tensor
    assert boxes.tolist() == [[0, 0, 2, 2], [3, 1, 6, 4]]
    off, valid = center_offset_targets(masks, boxes)
    assert torch.equal(valid, masks.any(0))
    # pixel (0, 0) has centre (0.5, 0.5): offset (+0.5, +0.5); pixel (1, 1): (-0.5, -0.5)
    assert off[:, 0, 0].tolist() == [0.5, 0.5] and off[:, 1, 1].tolist() == [-0.5, -0.5]
    # pixel (3, 5), centre (5.5, 3.5) -> (-1, -1); pixel (2, 4) is the box centre's pixel -> (0, 0)
    assert off[:, 3, 5].tolist() == [-1.0, -1.0] and off[:, 2, 4].tolist() == [0.0, 0.0]
    assert (off[:, ~valid] == 0).all()
    # the one-pixel instance has offset 0
    one = torch.zeros(1, 3, 3, dtype=torch.bool)
    one[0, 2, 1] = True
    off, valid = center_offset_targets(one, BitMasks(one).get_bounding_boxes().tensor)
    assert (off == 0).all() and valid.sum() == 1


def test_center_targets_without_instances_and_padding():
    off, valid = center_offset_targets(torch.zeros(0, 3, 4, dtype=torch.bool), torch.zeros(0, 4))
    assert off.shape == (2, 3, 4) and not valid.any()
    inst = Instances((3, 4))
    m = torch.zeros(1, 3, 4, dtype=torch.bool)
    m[0, :, 3] = True
    inst.gt_masks = BitMasks(m)
    inst.gt_boxes = inst.gt_masks.get_bounding_boxes()
    empty = Instances((2, 2))
    empty.gt_masks = BitMasks(torch.zeros(0, 2, 2, dtype=torch.bool))
    empty.gt_boxes = empty.gt_masks.get_bounding_boxes()
    off, valid = batch_center_targets([inst, empty], (4, 8))
    assert off.shape == (2, 2, 4, 8) and valid.shape == (2, 4, 8)
    assert valid[0].sum() == 3 and valid[0, :3, 3].all() and not valid[1].any()
    assert off[0, 1, 0, 3] == 1.0 and off[0, 1, 2, 3] == -1.0  # dy to the centre y = 1.5


def test_center_loss_by_hand():
    pred = torch.zeros(1, 2, 2, 2)
    target = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[-1.0, 0.0], [0.0, 9.0]]]])
    valid = torch.tensor([[[True, True], [False, False]]])
    # pixels (0,0): |1|+|-1| = 2; (0,1): |2|+|0| = 2 -> mean 2
    assert center_loss(pred, target, valid).item() == pytest.approx(2.0)
    none = center_loss(pred.requires_grad_(), target, torch.zeros_like(valid))
    assert none.item() == 0.0
    none.backward()
    assert pred.grad is not None and (pred.grad == 0).all()


def test_same_class_overlap_accuracy_by_hand():
    # Two class-0 instances side by side on a 4x8 image with boxes overlapping in columns 3-4.
    masks = torch.zeros(3, 4, 8, dtype=torch.bool)
    masks[0, :, 0:4] = True  # box [0, 0, 5, 4] (made wider by hand), centre (2.5, 2)
    masks[1, :, 4:8] = True  # box [3, 0, 8, 4], centre (5.5, 2)
    masks[2, 0, 0] = False  # empty third instance of another class: ignored
    boxes = torch.tensor([[0.0, 0.0, 5.0, 4.0], [3.0, 0.0, 8.0, 4.0], [0.0, 0.0, 8.0, 4.0]])
    classes = torch.tensor([0, 0, 1])
    # Contested pixels: columns 3 (instance 0) and 4 (instance 1) -> 8 pixels.
    perfect = pixel_centers(4, 8)
    perfect[0, :, :4], perfect[0, :, 4:] = 2.5, 5.5
    perfect[1] = 2.0
    assert same_class_overlap_accuracy(masks, boxes, classes, perfect) == (8, 8)
    # Zero offsets: column 3 (x = 3.5) is 1 from 2.5 and 2 from 5.5 -> right; column 4 (x = 4.5)
    # is 2 from 2.5 and 1 from 5.5 -> right as well.
    assert same_class_overlap_accuracy(masks, boxes, classes, pixel_centers(4, 8)) == (8, 8)
    # Everything points at the left centre: only column 3 is right.
    left = torch.stack([torch.full((4, 8), 2.5), torch.full((4, 8), 2.0)])
    assert same_class_overlap_accuracy(masks, boxes, classes, left) == (4, 8)
    # Different classes never contest each other: nothing to count.
    assert same_class_overlap_accuracy(masks, boxes, torch.tensor([0, 1, 2]), left) == (0, 0)
