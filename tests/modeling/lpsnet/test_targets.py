"""Known-answer tests of LPSNet's box-head targets (Sec. 3.2, Eq. 1, Fig. 3/4)."""
import math

import pytest
import torch
from detectron2.structures import BitMasks, Instances

from fastpan_d2.modeling.lpsnet.targets import (
    borderness_from_distances,
    build_box_targets,
    compute_locations,
    instance_id_map,
    level_ranges,
    mask_border_distances,
)


def test_borderness_formula():
    d = torch.tensor([[1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 2.0, 2.0], [0.0, 1.0, 1.0, 1.0]])
    got = borderness_from_distances(d)
    assert torch.allclose(got, torch.tensor([math.sqrt(1 / 3 * 2 / 4), 1.0, 0.0]))


def test_mask_border_distances_follow_the_mask_not_the_box():
    # An L-shaped mask: rows 0-4 of column 0-1, plus row 4 columns 0-5.
    ids = torch.full((6, 8), -1, dtype=torch.long)
    ids[0:5, 0:2] = 0
    ids[4, 0:6] = 0
    d = mask_border_distances(ids)  # (4, H, W): l, t, r, b
    # pixel (y=2, x=1): horizontal run x in [0, 1] -> l = 1.5, r = 0.5; vertical run y in [0, 4].
    assert d[:, 2, 1].tolist() == [1.5, 2.5, 0.5, 2.5]
    # pixel (y=4, x=3): horizontal run x in [0, 5] -> l = 3.5, r = 2.5; vertical run only y = 4.
    assert d[:, 4, 3].tolist() == [3.5, 0.5, 2.5, 0.5]


def test_instance_id_map_smallest_mask_wins_overlap():
    m = torch.zeros(2, 4, 4, dtype=torch.bool)
    m[0] = True  # big
    m[1, 1:3, 1:3] = True  # small, on top of the big one
    ids = instance_id_map(m, (5, 6))
    assert ids.shape == (5, 6)
    assert ids[1, 1] == 1 and ids[0, 0] == 0
    assert ids[4, 0] == -1 and ids[0, 5] == -1  # padding


def test_locations_and_ranges():
    locs = compute_locations([(2, 3)], [8], "cpu")[0]
    assert locs.tolist() == [[4, 4], [12, 4], [20, 4], [4, 12], [12, 12], [20, 12]]
    assert level_ranges([64, 128], 3) == [(0, 64), (64, 128), (128, math.inf)]


def _l_shape_instances(size=32):
    # One thing: an L made of a vertical bar x in [0, 8), y in [0, 32) and a horizontal bar
    # y in [24, 32), x in [0, 32). Its box is the whole 32x32 image; the top-right is off the mask.
    mask = torch.zeros(1, size, size, dtype=torch.bool)
    mask[0, :, 0:8] = True
    mask[0, 24:32, :] = True
    inst = Instances((size, size))
    bm = BitMasks(mask)
    inst.gt_masks = bm
    inst.gt_boxes = bm.get_bounding_boxes()
    inst.gt_classes = torch.tensor([0])
    return inst


@pytest.mark.parametrize("mode", ["mask", "box"])
def test_positive_samples_mask_vs_box(mode):
    inst = _l_shape_instances()
    locs = compute_locations([(8, 8)], [4], "cpu")  # locations at 2, 6, ..., 30
    pos, box, quality, gt = build_box_targets(inst, (32, 32), (32, 32), locs, [(0, math.inf)], mode, "borderness")
    pos = pos.view(8, 8)
    # (x=2, y=2) lies on the vertical bar: positive either way.
    assert pos[0, 0]
    # (x=18, y=10) is inside the box but off the mask: only FCOS's definition takes it.
    assert bool(pos[2, 4]) == (mode == "box")
    if mode == "mask":
        expected = torch.zeros(8, 8, dtype=torch.bool)
        expected[:, 0:2] = True
        expected[6:8, :] = True
        assert torch.equal(pos, expected)
    # Box target of location (x=2, y=2): distances to the 32x32 box.
    assert box.view(8, 8, 4)[0, 0].tolist() == [2, 2, 30, 30]
    # Border-ness of (x=2, y=2) from the MASK: row run x in [0, 7] -> l=2.5, r=5.5; column run y in
    # [0, 31] -> t=2.5, b=29.5.
    assert quality.view(8, 8)[0, 0].item() == pytest.approx(math.sqrt(2.5 / 5.5 * 2.5 / 29.5), rel=1e-5)
    if mode == "box":  # off-mask positives have border-ness 0
        assert quality.view(8, 8)[2, 4] == 0
    assert (gt[pos.view(-1)] == 0).all() and (gt[~pos.view(-1)] == -1).all()


def test_centerness_target_uses_box_distances():
    inst = _l_shape_instances()
    locs = compute_locations([(8, 8)], [4], "cpu")
    _, _, quality, _ = build_box_targets(inst, (32, 32), (32, 32), locs, [(0, math.inf)], "mask", "centerness")
    assert quality.view(8, 8)[0, 0].item() == pytest.approx(math.sqrt(2 / 30 * 2 / 30), rel=1e-5)


def test_fcos_level_assignment_by_regression_range():
    inst = _l_shape_instances()
    locs = compute_locations([(8, 8), (4, 4)], [4, 8], "cpu")
    ranges = [(0, 26), (26, math.inf)]
    pos, box, _, _ = build_box_targets(inst, (32, 32), (32, 32), locs, ranges, "mask", "borderness")
    reach = box.amax(1)
    lvl0 = pos[:64]
    lvl1 = pos[64:]
    assert lvl0.any() and lvl1.any()
    assert (reach[:64][lvl0] <= 26).all() and (reach[64:][lvl1] > 26).all()
    # (x=6, y=14) reaches max(6, 14, 26, 18) = 26 -> level 0; (x=2, y=30) reaches 30 -> not level 0;
    # at level 1, (x=4, y=28) reaches 28 -> level 1, and (x=12, y=12) is off the mask.
    assert pos[:64].view(8, 8)[3, 1] and not pos[:64].view(8, 8)[7, 0]
    assert pos[64:].view(4, 4)[3, 0] and not pos[64:].view(4, 4)[1, 1]


def test_no_things_gives_no_positives():
    inst = Instances((16, 16))
    inst.gt_masks = BitMasks(torch.zeros(0, 16, 16, dtype=torch.bool))
    inst.gt_boxes = inst.gt_masks.get_bounding_boxes()
    inst.gt_classes = torch.zeros(0, dtype=torch.long)
    locs = compute_locations([(4, 4)], [4], "cpu")
    pos, box, quality, gt = build_box_targets(inst, (16, 16), (16, 16), locs, [(0, math.inf)])
    assert not pos.any() and (quality == 0).all() and (gt == -1).all()
