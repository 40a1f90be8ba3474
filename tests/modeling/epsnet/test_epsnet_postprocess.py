"""EPSNet inference steps with hand-computed answers: NMS, resampling, mask pasting, merge."""
import pytest
import torch

from fastpan_d2.modeling.epsnet.postprocess import (
    batched_pairwise_iou,
    fast_nms,
    panoptic_merge,
    paste_masks,
    standard_nms,
)

BOXES = torch.tensor([
    [0.0, 0.0, 10.0, 10.0],    # 0
    [0.0, 0.0, 10.0, 9.0],     # 1: IoU 0.9 with 0
    [0.0, 0.0, 10.0, 8.1],     # 2: IoU 0.81 with 0, 0.9 with 1
    [20.0, 20.0, 30.0, 30.0],  # 3: alone
])


def test_batched_pairwise_iou():
    iou = batched_pairwise_iou(BOXES[None])[0]
    assert iou[0, 1].item() == pytest.approx(0.9)
    assert iou[1, 2].item() == pytest.approx(0.9)
    assert iou[0, 3].item() == 0.0
    assert torch.allclose(iou.diagonal(), torch.ones(4))


def test_fast_nms_suppresses_with_already_suppressed_boxes():
    # class 0 scores 0.9, 0.8, 0.7, 0.6 for boxes 0..3; class 1: only box 2 scores (0.5).
    scores = torch.tensor([[0.9, 0.0], [0.8, 0.0], [0.7, 0.5], [0.6, 0.0]])
    keep, s, c = fast_nms(BOXES, scores, iou_thresh=0.5, top_k=4, score_thresh=0.05, max_det=10)
    # Fast NMS: box 2 is removed by box 1 too (already suppressed boxes still suppress), box 3 stays;
    # class 1's box 2 is not touched by class 0's boxes.
    assert keep.tolist() == [0, 3, 2]
    assert c.tolist() == [0, 0, 1]
    assert s.tolist() == pytest.approx([0.9, 0.6, 0.5])
    # max_det keeps the best
    keep, s, c = fast_nms(BOXES, scores, 0.5, 4, 0.05, max_det=1)
    assert keep.tolist() == [0]


def test_fast_nms_differs_from_standard_nms_as_yolact_says():
    # box 1 (IoU 7/13 with 0) suppressed; box 2 has IoU 1/3 with 0 but 2/3 with 1:
    # standard NMS keeps it (its suppressor 1 is gone), Fast NMS removes it.
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [3.0, 0.0, 13.0, 10.0], [5.0, 0.0, 15.0, 10.0]])
    scores = torch.tensor([[0.9], [0.8], [0.7]])
    iou = batched_pairwise_iou(boxes[None])[0]
    assert 0.5 < iou[0, 1] and iou[0, 2] < 0.5 < iou[1, 2]
    keep_fast, _, _ = fast_nms(boxes, scores, 0.5, 10, 0.05, 10)
    keep_std, _, _ = standard_nms(boxes, scores, 0.5, 10, 0.05, 10)
    assert keep_fast.tolist() == [0]
    assert sorted(keep_std.tolist()) == [0, 2]


def test_nms_score_threshold_and_empty():
    scores = torch.tensor([[0.01], [0.02], [0.03], [0.04]])
    for nms in (fast_nms, standard_nms):
        keep, s, c = nms(BOXES, scores, 0.5, 10, 0.05, 10)
        assert keep.numel() == 0 and s.numel() == 0 and c.numel() == 0


def test_paste_masks_thresholds_logits_and_crops_by_box():
    logits = torch.full((2, 4, 4), 5.0)  # positive everywhere
    logits[1] = -5.0
    boxes = torch.tensor([[2.0, 0.0, 6.0, 4.0], [0.0, 0.0, 8.0, 8.0]])
    masks = paste_masks(logits, boxes, 2.0, (8, 8), (8, 8))
    expected = torch.zeros(8, 8, dtype=torch.bool)
    expected[0:4, 2:6] = True
    assert torch.equal(masks[0], expected)
    assert not masks[1].any()
    assert paste_masks(logits[:0], boxes[:0], 2.0, (8, 8), (5, 7)).shape == (0, 5, 7)


CATS = dict(num_stuff=2, thing_ids=[0, 1], stuff_ids=[2, 3])  # contiguous: things 0, 1; stuff 2, 3


def test_panoptic_merge_overlaps_stuff_other_and_area():
    h, w = 6, 8
    masks = torch.zeros(3, h, w, dtype=torch.bool)
    masks[0, 0:2, 0:4] = True  # 8 px, best score
    masks[1, 0:2, 2:5] = True  # 6 px, 4 of them taken by 0 -> 2/3 taken > 0.5: dropped
    masks[2, 1:3, 4:6] = True  # 4 px, none taken by 0 (after 1 is dropped)
    scores = torch.tensor([0.9, 0.8, 0.7])
    classes = torch.tensor([1, 0, 0])
    stuff = torch.full((h, w), 2, dtype=torch.long)  # 'other' (index 2) everywhere ...
    stuff[3:, :] = 0  # ... rows 3-5 stuff 0 (24 px)
    stuff[5, 7] = 1  # one pixel of stuff 1: below the area threshold
    seg, info = panoptic_merge(masks, scores, classes, stuff, overlap_thresh=0.5, stuff_area_thresh=2, **CATS)
    assert seg.dtype == torch.int32 and seg.shape == (h, w)
    expected = torch.zeros(h, w, dtype=torch.int32)
    expected[1:3, 4:6] = 2
    expected[0:2, 0:4] = 1
    expected[3:, :] = 3
    expected[5, 7] = 0  # stuff 1 too small -> void
    assert torch.equal(seg, expected)
    assert info == [
        {"id": 1, "category_id": 1, "isthing": True, "score": pytest.approx(0.9)},
        {"id": 2, "category_id": 0, "isthing": True, "score": pytest.approx(0.7)},
        {"id": 3, "category_id": 2, "isthing": False, "area": 23},
    ]


def test_panoptic_merge_no_things():
    stuff = torch.zeros(4, 4, dtype=torch.long)
    stuff[:, 2:] = 1
    seg, info = panoptic_merge(torch.zeros(0, 4, 4, dtype=torch.bool), torch.zeros(0), torch.zeros(0, dtype=torch.long),
                               stuff, overlap_thresh=0.5, stuff_area_thresh=1, **CATS)
    assert seg.tolist() == [[1, 1, 2, 2]] * 4
    assert [(s["category_id"], s["isthing"], s["area"]) for s in info] == [(2, False, 8), (3, False, 8)]


def test_panoptic_merge_no_stuff():
    stuff = torch.full((4, 4), 2, dtype=torch.long)  # all 'other'
    masks = torch.zeros(1, 4, 4, dtype=torch.bool)
    masks[0, 1:3, 1:3] = True
    seg, info = panoptic_merge(masks, torch.tensor([0.5]), torch.tensor([0]), stuff, overlap_thresh=0.5,
                               stuff_area_thresh=1, **CATS)
    assert seg.sum().item() == 4 and seg.max().item() == 1
    assert info == [{"id": 1, "category_id": 0, "isthing": True, "score": 0.5}]
