"""Known-answer tests of the parameter-free panoptic head (Sec. III-A/B/C of Weber et al.).

Classes (contiguous ids): things 0 ("a") and 1 ("b"), stuff 2 and 3. Images are tiny and the
logits are built by hand so that the right panoptic output can be written down.
"""
import pytest
import torch

from fastpan_d2.modeling.single_shot.panoptic_head import (
    SingleShotPanopticHead,
    box_masks,
    policy_order,
)
from fastpan_d2.modeling.single_shot.targets import pixel_centers

THINGS, STUFF = [0, 1], [2, 3]


def head(**kw):
    args = dict(thing_ids=THINGS, stuff_ids=STUFF, policy="highest_confidence", score_thresh=0.4,
                unknown=False, stuff_area_limit=0)
    args.update(kw)
    return SingleShotPanopticHead(**args)


def logits_from_labels(labels, num_classes=4):
    """Logits whose argmax is ``labels``: 5 on the label, 0 elsewhere."""
    return torch.nn.functional.one_hot(labels, num_classes).permute(2, 0, 1).float() * 5


def decode(seg, info):
    """Per pixel (category_id, detection instance_id or -1), void = (-1, -1)."""
    cat = torch.full(seg.shape, -1)
    inst = torch.full(seg.shape, -1)
    for s in info:
        cat[seg == s["id"]] = s["category_id"]
        inst[seg == s["id"]] = s.get("instance_id", -1)
    return cat, inst


def test_box_masks_pixel_centres():
    m = box_masks(torch.tensor([[1.0, 0.0, 3.0, 2.0], [1.2, 1.2, 1.8, 1.8]]), 3, 4)
    expected0 = torch.tensor([[0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]], dtype=torch.bool)
    expected1 = torch.zeros(3, 4, dtype=torch.bool)
    expected1[1, 1] = True  # only the centre (1.5, 1.5) of pixel (1, 1) lies inside
    assert torch.equal(m[0], expected0) and torch.equal(m[1], expected1)


def test_policy_order():
    boxes = torch.tensor([[0, 0, 4, 4], [0, 0, 2, 2], [0, 0, 3, 3]], dtype=torch.float)
    scores = torch.tensor([0.5, 0.9, 0.7])
    assert policy_order("highest_confidence", boxes, scores).tolist() == [1, 2, 0]
    assert policy_order("smallest_first", boxes, scores).tolist() == [1, 2, 0]
    scores = torch.tensor([0.9, 0.5, 0.7])
    assert policy_order("highest_confidence", boxes, scores).tolist() == [0, 2, 1]
    assert policy_order("smallest_first", boxes, scores).tolist() == [1, 2, 0]
    with pytest.raises(ValueError):
        policy_order("largest_first", boxes, scores)


def test_inter_class_overlap_follows_the_semantic_argmax():
    # 6x8 image: stuff 2 everywhere, class-a blob columns 1-3, class-b blob columns 4-6, rows 1-4.
    labels = torch.full((6, 8), 2)
    labels[1:5, 1:4] = 0
    labels[1:5, 4:7] = 1
    X = logits_from_labels(labels)
    # Both boxes cover both blobs; the class decides the pixels (precise contour from the logits).
    boxes = torch.tensor([[0.0, 0.0, 6.0, 6.0], [2.0, 0.0, 8.0, 6.0]])
    seg, info = head()(X, boxes, torch.tensor([0.9, 0.8]), torch.tensor([0, 1]))
    cat, inst = decode(seg, info)
    expected = labels.clone()
    assert torch.equal(cat, expected)
    assert torch.equal(inst[1:5, 1:4], torch.zeros(4, 3, dtype=torch.long))
    assert torch.equal(inst[1:5, 4:7], torch.ones(4, 3, dtype=torch.long))
    assert seg.dtype == torch.int32
    ids = sorted(s["id"] for s in info)
    assert ids == list(range(1, len(info) + 1))
    things = [s for s in info if s["isthing"]]
    assert [(s["category_id"], s["score"]) for s in things] == [(0, pytest.approx(0.9)), (1, pytest.approx(0.8))]
    assert [s for s in info if not s["isthing"]] == [
        {"id": 3, "category_id": 2, "isthing": False, "area": 48 - 24}
    ]


def _same_class_scene():
    # Two class-a objects on stuff 3: the semantic branch sees one blob rows 1-4, columns 1-8.
    labels = torch.full((6, 10), 3)
    labels[1:5, 1:9] = 0
    X = logits_from_labels(labels)
    big = [1.0, 1.0, 7.0, 5.0]  # columns 1-6
    small = [4.0, 1.0, 9.0, 5.0]  # columns 4-8 (overlap: columns 4-6)
    return labels, X, torch.tensor([big, small])


def test_highest_confidence_policy():
    _, X, boxes = _same_class_scene()
    classes = torch.tensor([0, 0])
    seg, info = head(policy="highest_confidence")(X, boxes, torch.tensor([0.9, 0.6]), classes)
    _, inst = decode(seg, info)
    assert (inst[1:5, 1:7] == 0).all() and (inst[1:5, 7:9] == 1).all()
    seg, info = head(policy="highest_confidence")(X, boxes, torch.tensor([0.6, 0.9]), classes)
    _, inst = decode(seg, info)
    assert (inst[1:5, 1:4] == 0).all() and (inst[1:5, 4:9] == 1).all()


def test_smallest_first_policy():
    _, X, boxes = _same_class_scene()
    # The big box is more confident, but the small one (area 20 < 24) takes the overlap.
    seg, info = head(policy="smallest_first")(X, boxes, torch.tensor([0.9, 0.6]), torch.tensor([0, 0]))
    _, inst = decode(seg, info)
    assert (inst[1:5, 1:4] == 0).all() and (inst[1:5, 4:9] == 1).all()
    areas = {s["instance_id"]: (seg == s["id"]).sum().item() for s in info if s["isthing"]}
    assert areas == {0: 12, 1: 20}


def test_closest_center_policy():
    _, X, boxes = _same_class_scene()
    # Box centres: big (4, 3), small (6.5, 3). Predicted centres: columns 1-4 point at (4, 3),
    # columns 5-9 at (6.5, 3), so the overlap splits between columns 4 and 5 whatever the scores.
    centers = torch.zeros(2, 6, 10)
    centers[0, :, :5] = 4.0
    centers[0, :, 5:] = 6.5
    centers[1] = 3.0
    for scores in ([0.9, 0.6], [0.6, 0.9]):
        seg, info = head(policy="closest_center")(
            X, boxes, torch.tensor(scores), torch.tensor([0, 0]), centers
        )
        _, inst = decode(seg, info)
        assert (inst[1:5, 1:5] == 0).all() and (inst[1:5, 5:9] == 1).all(), scores
    # With offsets 0 (centre = the pixel itself), the nearer box centre wins: column c (centre
    # c + .5) goes to the big box iff |c + .5 - 4| < |c + .5 - 6.5|, i.e. c <= 4.
    seg, info = head(policy="closest_center")(
        X, boxes, torch.tensor([0.6, 0.9]), torch.tensor([0, 0]), pixel_centers(6, 10)
    )
    _, inst = decode(seg, info)
    assert (inst[1:5, 1:5] == 0).all() and (inst[1:5, 5:9] == 1).all()
    with pytest.raises(ValueError):
        head(policy="closest_center")(X, boxes, torch.tensor([0.6, 0.9]), torch.tensor([0, 0]))


def test_score_threshold_and_false_detection():
    labels = torch.full((6, 8), 2)
    labels[1:4, 1:4] = 0
    X = logits_from_labels(labels)
    boxes = torch.tensor([[1.0, 1.0, 4.0, 4.0], [5.0, 2.0, 8.0, 6.0]])
    # Detection 0 is under the 0.4 threshold; detection 1 lies on stuff, so it wins no pixel.
    seg, info = head(unknown=False)(X, boxes, torch.tensor([0.39, 0.95]), torch.tensor([0, 0]))
    assert [s["isthing"] for s in info] == [False]
    cat, _ = decode(seg, info)
    assert (cat == 2).all()  # the undetected blob falls to the best stuff class
    seg, info = head(unknown=True)(X, boxes, torch.tensor([0.39, 0.95]), torch.tensor([0, 0]))
    cat, _ = decode(seg, info)
    expected = torch.full((6, 8), 2)
    expected[1:4, 1:4] = -1  # 'unknown' = void (id 0)
    assert torch.equal(cat, expected) and (seg[1:4, 1:4] == 0).all()
    # Lowering the threshold brings detection 0 back.
    seg, info = head(score_thresh=0.3)(X, boxes, torch.tensor([0.39, 0.95]), torch.tensor([0, 0]))
    assert [s["instance_id"] for s in info if s["isthing"]] == [0]


def test_unknown_outside_the_box_of_a_detected_class():
    # The class-a blob is wider than its box: the part outside is 'unknown' (void) or stuff.
    labels = torch.full((4, 8), 3)
    labels[:, 1:7] = 0
    X = logits_from_labels(labels)
    X[3, :, 4:7] = 1.0  # stuff 3 is the semantic branch's second choice there
    boxes = torch.tensor([[1.0, 0.0, 4.0, 4.0]])
    seg, info = head(unknown=True)(X, boxes, torch.tensor([0.8]), torch.tensor([0]))
    cat, _ = decode(seg, info)
    assert (cat[:, 1:4] == 0).all() and (cat[:, 4:7] == -1).all() and (cat[:, [0, 7]] == 3).all()
    seg, info = head(unknown=False)(X, boxes, torch.tensor([0.8]), torch.tensor([0]))
    cat, _ = decode(seg, info)
    assert (cat[:, 4:7] == 3).all()


def test_small_stuff_removal():
    labels = torch.full((8, 8), 2)
    labels[0:2, 0:3] = 3  # 6 pixels of stuff 3
    X = logits_from_labels(labels)
    empty = torch.zeros((0, 4)), torch.zeros(0), torch.zeros(0, dtype=torch.long)
    seg, info = head(stuff_area_limit=6)(X, *empty)
    assert [s["category_id"] for s in info] == [2, 3]
    seg, info = head(stuff_area_limit=7)(X, *empty)
    assert info == [{"id": 1, "category_id": 2, "isthing": False, "area": 58}]
    assert (seg[0:2, 0:3] == 0).all() and (seg[labels == 2] == 1).all()


def test_image_without_things():
    labels = torch.full((5, 7), 3)
    labels[:, :2] = 2
    seg, info = head(unknown=True)(
        logits_from_labels(labels), torch.zeros((0, 4)), torch.zeros(0), torch.zeros(0, dtype=torch.long)
    )
    cat, _ = decode(seg, info)
    assert torch.equal(cat, labels) and all(not s["isthing"] for s in info)


def test_image_without_stuff():
    # Everything is class b; two detections split it along their (non-overlapping) boxes.
    labels = torch.full((4, 6), 1)
    boxes = torch.tensor([[0.0, 0.0, 3.0, 4.0], [3.0, 0.0, 6.0, 4.0]])
    seg, info = head(unknown=True, stuff_area_limit=4096)(
        logits_from_labels(labels), boxes, torch.tensor([0.7, 0.5]), torch.tensor([1, 1])
    )
    assert [(s["category_id"], s["isthing"]) for s in info] == [(1, True), (1, True)]
    assert (seg[:, :3] == 1).all() and (seg[:, 3:] == 2).all()


def test_dataset_without_stuff_classes():
    h = SingleShotPanopticHead(thing_ids=[0, 1], stuff_ids=[], policy="highest_confidence", unknown=False)
    labels = torch.zeros((4, 4), dtype=torch.long)
    X = torch.nn.functional.one_hot(labels, 2).permute(2, 0, 1).float()
    seg, info = h(X, torch.tensor([[0.0, 0.0, 2.0, 4.0]]), torch.tensor([0.9]), torch.tensor([0]))
    assert (seg[:, :2] == 1).all() and (seg[:, 2:] == 0).all() and len(info) == 1


def reference_panoptic(X, boxes, scores, classes, policy, centers=None):
    """The paper's definition written naively: stack Y = [X_stuff ; X_{c_i} cropped to b_i] (one
    slice per detection, ordered by the policy's priority), argmax; same-class ties by the policy.
    Returns per pixel (category id, input index of the detection or -1)."""
    keep = (scores >= 0.4).nonzero().flatten()
    order = keep[policy_order(policy, boxes[keep], scores[keep])]
    C, H, W = X.shape
    Y = [X[s] for s in STUFF]
    inside = box_masks(boxes[order], H, W)
    for k, d in enumerate(order.tolist()):
        Y.append(X[THINGS[classes[d]]].masked_fill(~inside[k], float("-inf")))
    val, arg = torch.stack(Y).max(0)
    cat = torch.tensor(STUFF)[arg.clamp(max=len(STUFF) - 1)]
    inst = torch.full((H, W), -1)
    for y in range(H):
        for x in range(W):
            if arg[y, x] < len(STUFF):
                continue
            winner = order[arg[y, x] - len(STUFF)]
            c = classes[winner]
            cand = [d for k, d in enumerate(order.tolist()) if inside[k, y, x] and classes[d] == c]
            if policy == "closest_center":
                ctr = (boxes[cand, :2] + boxes[cand, 2:]) / 2
                dist = ((ctr - centers[:, y, x]) ** 2).sum(1)
                winner = cand[int(dist.argmin())]
            else:
                winner = cand[0]
            cat[y, x], inst[y, x] = THINGS[c], winner
    return cat, inst


@pytest.mark.parametrize("policy", ["highest_confidence", "smallest_first", "closest_center"])
def test_matches_the_naive_definition_on_random_inputs(policy):
    g = torch.Generator().manual_seed(3)
    H, W, D = 13, 17, 7
    X = torch.randn(4, H, W, generator=g) * 3
    X[:2] += 3  # things are likely where boxes are
    xy = torch.rand(D, 2, generator=g) * torch.tensor([W, H]) * 0.7
    boxes = torch.cat([xy, xy + 2 + torch.rand(D, 2, generator=g) * 9], 1)
    scores = torch.rand(D, generator=g) * 0.7 + 0.3
    scores[2] = 0.35  # one under the 0.4 threshold
    classes = torch.randint(0, 2, (D,), generator=g)
    centers = pixel_centers(H, W) + torch.randn(2, H, W, generator=g) * 3
    seg, info = head(policy=policy)(X, boxes, scores, classes, centers)
    cat, inst = decode(seg, info)
    ref_cat, ref_inst = reference_panoptic(X, boxes, scores, classes, policy, centers)
    assert (ref_inst >= 0).sum() > 40 and len(set(ref_inst.flatten().tolist())) > 4  # a real test
    assert (scores < 0.4).any()
    assert torch.equal(cat, ref_cat) and torch.equal(inst, ref_inst)


def test_thing_index_vs_contiguous_id_interleaved():
    # Cityscapes-like layout: contiguous ids 0 and 2 are stuff, 1 and 3 are things, so thing index
    # 0 is slice 1 and thing index 1 is slice 3 of the logits; category ids are contiguous ids.
    h = SingleShotPanopticHead(thing_ids=[1, 3], stuff_ids=[0, 2], policy="highest_confidence",
                               unknown=True, stuff_area_limit=0)
    labels = torch.full((6, 8), 2)
    labels[:, :2] = 0
    labels[1:4, 2:5] = 3  # an object of thing index 1, detected
    labels[4:6, 5:8] = 1  # an object of thing index 0, NOT detected -> unknown (void)
    X = logits_from_labels(labels)
    seg, info = h(X, torch.tensor([[2.0, 1.0, 5.0, 4.0]]), torch.tensor([0.9]), torch.tensor([1]))
    cat, inst = decode(seg, info)
    expected = labels.clone()
    expected[4:6, 5:8] = -1
    assert torch.equal(cat, expected)
    assert [(s["category_id"], s["isthing"]) for s in info] == [(3, True), (0, False), (2, False)]
    assert (inst == 0).sum() == 9
