"""Known-answer tests of LPSNet's parameter-free panoptic head (Sec. 3.4, Table 5 right)."""
import pytest
import torch

from fastpan_d2.modeling.lpsnet.panoptic_head import ParameterFreePanopticHead

# Classes: things 0, 1; stuff 2, 3.


def head(**kw):
    return ParameterFreePanopticHead(thing_ids=[0, 1], stuff_ids=[2, 3], num_classes=4, **kw)


def run(h, sem, boxes, scores, classes, borderness=None):
    boxes = torch.tensor(boxes, dtype=torch.float32).view(-1, 4)
    scores = torch.tensor(scores, dtype=torch.float32)
    classes = torch.tensor(classes, dtype=torch.long)
    borderness = torch.full_like(scores, 0.5) if borderness is None else torch.tensor(borderness)
    return h(sem, boxes, scores, classes, borderness)


def test_boxes_take_their_class_pixels_stuff_and_void():
    sem = torch.full((8, 10), 2, dtype=torch.long)
    sem[1:4, 1:4] = 0  # thing class 0 inside box A
    sem[4:7, 6:9] = 1  # thing class 1 inside box B
    sem[6:8, 0:2] = 0  # thing-class pixels no box explains -> void
    sem[0, 9] = 3  # one pixel of stuff class 3
    # C (class 1, low score) covers the whole image, but its mask is exactly B's -> overlap 1.0 > 0.3.
    seg, info = run(head(), sem, [[1, 1, 4, 4], [6, 4, 9, 7], [0, 0, 10, 8]], [0.9, 0.8, 0.5], [0, 1, 1])
    expected = torch.full((8, 10), 3, dtype=torch.int32)
    expected[1:4, 1:4] = 1
    expected[4:7, 6:9] = 2
    expected[6:8, 0:2] = 0
    expected[0, 9] = 4
    assert torch.equal(seg, expected)
    assert seg.dtype == torch.int32
    assert info == [
        {"id": 1, "category_id": 0, "isthing": True, "score": pytest.approx(0.9), "box_index": 0},
        {"id": 2, "category_id": 1, "isthing": True, "score": pytest.approx(0.8), "box_index": 1},
        {"id": 3, "category_id": 2, "isthing": False, "area": 80 - 9 - 9 - 4 - 1},
        {"id": 4, "category_id": 3, "isthing": False, "area": 1},
    ]


def test_input_order_does_not_matter_boxes_are_pasted_by_confidence():
    sem = torch.zeros((2, 10), dtype=torch.long)
    # A: cols 0-3 (8 px), B: cols 2-7 (12 px), overlap with A 4 px = 0.33 > 0.3 -> dropped.
    # C: cols 5-9 (10 px): 0.6 of it would be B's, but B is dropped, so C keeps everything.
    boxes = [[5, 0, 10, 2], [0, 0, 4, 2], [2, 0, 8, 2]]  # C, A, B (not sorted)
    seg, info = run(head(policy="confidence"), sem, boxes, [0.7, 0.9, 0.8], [0, 0, 0])
    expected = torch.tensor([[1, 1, 1, 1, 0, 2, 2, 2, 2, 2]] * 2, dtype=torch.int32)
    assert torch.equal(seg, expected)
    assert [(s["id"], s["box_index"]) for s in info] == [(1, 1), (2, 0)]


def test_overlap_below_threshold_keeps_untaken_part():
    sem = torch.zeros((1, 10), dtype=torch.long)
    # A: cols 0-5, B: cols 4-9 (6 px), 2 of them taken = 0.33: kept at threshold 0.4, dropped at 0.3.
    boxes = [[0, 0, 6, 1], [4, 0, 10, 1]]
    seg, _ = run(head(policy="confidence", overlap_thresh=0.4), sem, boxes, [0.9, 0.8], [0, 0])
    assert seg[0].tolist() == [1] * 6 + [2] * 4
    seg, _ = run(head(policy="confidence", overlap_thresh=0.3), sem, boxes, [0.9, 0.8], [0, 0])
    assert seg[0].tolist() == [1] * 6 + [0] * 4


@pytest.mark.parametrize(
    "policy,expected",
    [
        ("confidence", [1] * 12 + [2] * 8),
        ("area", [1] * 9 + [2] * 11),
        # pixel centres 9.5 / 10.5 / 11.5: border-ness to A [0, 12] = .513/.378/.209, to B [9, 20] =
        # .218/.397/.542; both predicted 0.5 -> A, B, B.
        ("borderness", [1] * 10 + [2] * 10),
    ],
)
def test_same_class_conflict_policies(policy, expected):
    sem = torch.zeros((1, 20), dtype=torch.long)
    # A: [0, 12] (area 12), B: [9, 20] (area 11), conflict pixels 9, 10, 11 = 3/11 <= 0.3 -> both kept.
    seg, info = run(head(policy=policy), sem, [[0, 0, 12, 1], [9, 0, 20, 1]], [0.9, 0.8], [0, 0], [0.5, 0.5])
    assert seg[0].tolist() == expected
    assert len(info) == 2


def test_no_things_only_stuff():
    sem = torch.full((4, 4), 3, dtype=torch.long)
    sem[:, :2] = 2
    seg, info = run(head(), sem, [], [], [])
    assert torch.equal(seg, (sem - 1).to(torch.int32))  # stuff 2 -> id 1, stuff 3 -> id 2
    assert [s["category_id"] for s in info] == [2, 3] and not any(s["isthing"] for s in info)


def test_no_stuff_only_things():
    sem = torch.zeros((4, 6), dtype=torch.long)
    sem[:, 3:] = 1
    seg, info = run(head(), sem, [[0, 0, 3, 4], [3, 0, 6, 4]], [0.6, 0.7], [0, 1])
    assert seg[:, :3].eq(2).all() and seg[:, 3:].eq(1).all()
    assert [(s["id"], s["category_id"]) for s in info] == [(1, 1), (2, 0)]
    assert all(s["isthing"] for s in info)


def test_stuff_area_limit_and_min_score():
    sem = torch.full((4, 4), 2, dtype=torch.long)
    sem[0, 0] = 3
    sem[2:, 2:] = 0
    seg, info = run(head(stuff_area_limit=2, min_score=0.5), sem, [[2, 2, 4, 4]], [0.4], [0])
    assert seg[0, 0] == 0  # 1-pixel stuff segment dropped
    assert seg[2:, 2:].eq(0).all()  # the box is below min_score
    assert [s["category_id"] for s in info] == [2]
