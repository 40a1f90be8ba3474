"""Targets from the mapper's panoptic fields, and the panoptic merge, with hand-built answers."""
import torch

from fastpan_d2.modeling.yoso.inference import merge_panoptic, select_queries
from fastpan_d2.modeling.yoso.targets import panoptic_targets

IS_THING = torch.tensor([True, True, False, False])  # classes 0, 1 things; 2, 3 stuff


def test_panoptic_targets():
    pan = torch.tensor([[1, 1, 2], [3, 3, 0]])
    segs = [
        {"id": 1, "category_id": 3},
        {"id": 2, "category_id": 0, "iscrowd": 1},  # crowd: not a target
        {"id": 3, "category_id": 1, "iscrowd": 0},
        {"id": 7, "category_id": 2},  # cropped away by augmentation: dropped
    ]
    t = panoptic_targets(pan, segs, pad_size=(3, 4))
    assert t["labels"].tolist() == [3, 1]
    assert t["masks"].shape == (2, 3, 4) and t["masks"].dtype == torch.bool
    assert t["masks"][0].tolist() == [[1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    assert t["masks"][1].tolist() == [[0, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]]
    empty = panoptic_targets(pan, [], pad_size=(3, 4))
    assert empty["labels"].shape == (0,) and empty["masks"].shape == (0, 3, 4)


def test_select_queries():
    logits = torch.log(torch.tensor([[0.9, 0.05, 0.05], [0.1, 0.1, 0.8], [0.5, 0.4, 0.1]]))  # 2 classes + void
    keep, scores, labels, probs = select_queries(logits, 1.0, 0.8)
    assert keep.tolist() == [0] and labels.tolist() == [0]
    torch.testing.assert_close(scores, torch.tensor([0.9]))
    # a low temperature sharpens the probabilities: query 2 (0.5 vs 0.4) passes
    keep, _, labels, _ = select_queries(logits, 0.1, 0.8)
    assert keep.tolist() == [0, 2] and labels.tolist() == [0, 0]


def _m(rows, cols, H=4, W=6, p=0.9):
    m = torch.full((H, W), 0.1)
    m[rows, cols] = p
    return m


def test_merge_things_stuff_and_overlaps():
    # 4x6 image. q0 thing A left 2 cols; q1 thing A cols 1..2 overlapping q0 (lower score);
    # q2, q3 stuff class 2 (top-right / bottom-right) -> one segment; q4 thing 1 hidden under q0.
    masks = torch.stack([
        _m(slice(None), slice(0, 2)),
        _m(slice(None), slice(1, 3)),
        _m(slice(0, 2), slice(3, 6)),
        _m(slice(2, 4), slice(3, 6)),
        _m(slice(0, 1), slice(0, 1)),
    ])
    scores = torch.tensor([0.95, 0.9, 0.85, 0.9, 0.85])
    labels = torch.tensor([0, 0, 2, 2, 1])
    seg, info = merge_panoptic(scores, labels, masks, IS_THING, overlap_threshold=0.4)
    assert seg.dtype == torch.int32 and seg.shape == (4, 6)
    # q1 keeps column 2 (visible 4 of its 8 px = 0.5 >= 0.4); q4 is fully covered -> dropped
    by_id = {s["id"]: s for s in info}
    assert len(info) == 3
    ids = seg[0].tolist()
    a, b, st = ids[0], ids[2], ids[3]
    assert len({a, b, st}) == 3 and 0 not in (a, b, st)
    assert by_id[a]["category_id"] == 0 and by_id[a]["isthing"] and by_id[a]["area"] == 8
    assert by_id[b]["category_id"] == 0 and by_id[b]["area"] == 4
    assert by_id[st]["category_id"] == 2 and not by_id[st]["isthing"] and by_id[st]["area"] == 12
    assert abs(by_id[st]["score"] - 0.9) < 1e-6 and abs(by_id[a]["score"] - 0.95) < 1e-6
    expected = torch.tensor([[a, a, b, st, st, st]] * 4, dtype=torch.int32)
    assert torch.equal(seg, expected)
    assert sorted(by_id) == [1, 2, 3]  # consecutive ids from 1
    # with the default 0.8 overlap threshold q1 (half hidden) is dropped: its column is void
    seg, info = merge_panoptic(scores, labels, masks, IS_THING, overlap_threshold=0.8)
    assert len(info) == 2 and (seg[:, 2] == 0).all()


def test_merge_void_where_winner_is_unsure_and_empty_inputs():
    masks = torch.stack([_m(slice(0, 2), slice(None), H=4, W=3)])
    seg, info = merge_panoptic(torch.tensor([0.9]), torch.tensor([3]), masks, IS_THING)
    assert (seg[:2] == 1).all() and (seg[2:] == 0).all()  # prob 0.1 < 0.5: void
    assert info == [{"id": 1, "category_id": 3, "isthing": False, "score": info[0]["score"], "area": 6}]
    seg, info = merge_panoptic(torch.zeros(0), torch.zeros(0, dtype=torch.long), torch.zeros(0, 4, 3), IS_THING)
    assert info == [] and seg.shape == (4, 3) and (seg == 0).all()
    # an image with only stuff, and one with only things
    two_stuff = torch.stack([_m(slice(None), slice(0, 1), H=2, W=2), _m(slice(None), slice(1, 2), H=2, W=2)])
    seg, info = merge_panoptic(torch.tensor([0.9, 0.9]), torch.tensor([2, 3]), two_stuff, IS_THING)
    assert [s["isthing"] for s in info] == [False, False] and seg.tolist() == [[1, 2], [1, 2]]
    seg, info = merge_panoptic(torch.tensor([0.9, 0.9]), torch.tensor([1, 1]), two_stuff, IS_THING)
    assert [s["isthing"] for s in info] == [True, True] and len(set(seg.flatten().tolist())) == 2
