"""Matching detections to GT things and the per-pixel panoptic target, by hand."""
import torch

from fastpan_d2.data.categories import PanopticCategories
from fastpan_d2.modeling.fpsnet.targets import match_detections_to_gt, panoptic_targets


def t(x):
    return torch.tensor(x, dtype=torch.float32)


def test_match_threshold_one_to_one_highest_iou():
    gt = t([[0, 0, 10, 10], [20, 0, 30, 10], [40, 40, 50, 50]])
    det = t(
        [
            [0, 0, 10, 11],  # IoU 10/11 with gt0
            [0, 0, 10, 10],  # IoU 1 with gt0 -> gt0 goes here, det0 stays unmatched
            [20, 0, 30, 20],  # IoU 0.5 with gt1: NOT greater than 0.5 -> unmatched
            [40, 40, 50, 52],  # IoU 100/120 with gt2
            [100, 100, 110, 110],  # nothing
        ]
    )
    assert match_detections_to_gt(det, gt, 0.5).tolist() == [-1, 0, -1, 2, -1]


def test_match_greedy_resolves_a_chain():
    # det0 overlaps gt0 (IoU .9) and gt1 (.6); det1 overlaps gt1 (.8) only... built so that
    # greedy picks (det0, gt0) then (det1, gt1).
    gt = t([[0, 0, 10, 10], [0, 0, 10, 15]])
    det = t([[0, 0, 10, 11], [0, 0, 10, 14]])
    # IoUs: det0-gt0 10/11=.909, det0-gt1 11/15=.733, det1-gt0 10/14=.714, det1-gt1 14/15=.933
    assert match_detections_to_gt(det, gt, 0.5).tolist() == [0, 1]
    # Two detections, one GT: the better one wins, the other stays unmatched.
    assert match_detections_to_gt(det, gt[:1], 0.5).tolist() == [0, -1]
    # Two GTs, one detection: only one GT gets it.
    assert match_detections_to_gt(det[:1], gt, 0.5).tolist() == [0]


def test_match_same_class_switch_and_empty():
    gt = t([[0, 0, 10, 10]])
    det = t([[0, 0, 10, 10]])
    assert match_detections_to_gt(det, gt, 0.5, torch.tensor([1]), torch.tensor([2])).tolist() == [-1]
    assert match_detections_to_gt(det, gt, 0.5).tolist() == [0]
    assert match_detections_to_gt(det, t([]).view(0, 4), 0.5).tolist() == [-1]
    assert match_detections_to_gt(t([]).view(0, 4), gt, 0.5).tolist() == []


def cats():
    # 5 classes: things are contiguous 1 and 3; stuff 0, 2, 4 (stuff index 0, 1, 2).
    return PanopticCategories(num_classes=5, thing_ids=[1, 3], stuff_ids=[0, 2, 4])


def test_panoptic_targets_by_hand():
    N = 4  # N_att -> stuff channels 4, 5, 6; unmatched thing 7; unlabeled 8
    sem = torch.tensor(
        [
            [0, 0, 1, 1],
            [2, 2, 1, 1],
            [4, 255, 3, 3],
            [4, 4, 3, 1],
        ]
    )
    masks = torch.zeros(3, 4, 4, dtype=torch.bool)
    masks[0, 0:2, 2:4] = True  # thing A (class contiguous 1)
    masks[1, 2:4, 2:3] = True  # thing B (class 3)
    masks[1, 2, 3] = True
    masks[2, 3, 3] = True  # thing C (class 1), not matched
    gt_slot = torch.tensor([2, 0, -1])
    target = panoptic_targets(sem, masks, gt_slot, cats().contiguous_to_stuff_index(), N)
    expected = torch.tensor(
        [
            [4, 4, 2, 2],
            [5, 5, 2, 2],
            [6, 8, 0, 0],
            [6, 6, 0, 7],
        ]
    )
    assert torch.equal(target, expected)


def test_panoptic_targets_no_things_and_no_stuff():
    stuff_index = cats().contiguous_to_stuff_index()
    sem = torch.tensor([[0, 2], [4, 255]])
    target = panoptic_targets(sem, torch.zeros(0, 2, 2, dtype=torch.bool), torch.zeros(0, dtype=torch.long), stuff_index, 3)
    assert target.tolist() == [[3, 4], [5, 7]]
    # Things only (no stuff classes at all in the dataset, as Pascal VOC).
    voc = PanopticCategories(num_classes=2, thing_ids=[0, 1], stuff_ids=[])
    sem = torch.tensor([[0, 1], [255, 1]])
    masks = torch.tensor([[[True, False], [False, False]], [[False, True], [False, True]]])
    target = panoptic_targets(sem, masks, torch.tensor([-1, 1]), voc.contiguous_to_stuff_index(), 3)
    assert target.tolist() == [[3, 1], [4, 1]]
