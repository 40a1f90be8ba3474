"""FPSNet end to end on a tiny model: losses, gradients, targets through the slots, inference
format at the original size, images without things / without stuff, stage timing."""
import pytest
import torch
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from fastpan_d2.modeling.common.stage_timer import StageRecorder
from fastpan_d2.modeling.fpsnet.targets import IGNORE

from .fpsnet_testutils import make_input, tiny_cfg


def build(**fpsnet):
    torch.manual_seed(0)
    return build_model(tiny_cfg(**fpsnet))


def test_training_losses_and_which_parameters_learn():
    model = build()
    model.train()
    batch = [make_input(64, 64), make_input(40, 72, things=((5, 5, 30, 30, 1),))]
    with EventStorage():
        losses = model(batch)
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_panoptic"}
    assert all(torch.isfinite(v) for v in losses.values())
    # The panoptic loss alone: no gradient reaches the detector's head through the detections
    # (attention masks), but the backbone, the feature map and the panoptic head learn.
    losses["loss_panoptic"].backward(retain_graph=True)
    assert all(p.grad is None for p in model.detector.head.parameters())
    for module in (model.panoptic_head, model.feature_map):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    assert model.backbone.bottom_up.stem.conv1.weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
    (losses["loss_cls"] + losses["loss_box_reg"]).backward()
    assert all(p.grad is not None for p in model.detector.head.parameters())
    assert all(p.grad is None for p in model.panoptic_head.parameters())


def test_loss_weights_are_lambda_det_and_lambda_pan():
    batch = [make_input(64, 64)]
    ref = build()
    ref.train()
    with EventStorage():
        torch.manual_seed(1)
        base = ref(batch)
    model = build(DET_LOSS_WEIGHT=1.0, PAN_LOSS_WEIGHT=2.0)
    model.train()
    with EventStorage():
        torch.manual_seed(1)
        scaled = model(batch)
    assert scaled["loss_cls"].item() == pytest.approx(2 * base["loss_cls"].item(), rel=1e-4)
    assert scaled["loss_panoptic"].item() == pytest.approx(2 * base["loss_panoptic"].item(), rel=1e-4)


@pytest.mark.parametrize("switch", [{"GT_BOXES_AS_MASKS": True}, {"TRAIN_GT_BOXES_PROB": 1.0}])
def test_targets_follow_the_shuffled_slots_of_matched_masks(switch):
    # GT boxes as masks: every thing is matched to its own mask, wherever shuffling put it.
    model = build(**switch)
    model.train()
    x = make_input(64, 64, things=((4, 4, 20, 24, 0), (30, 10, 44, 40, 3), (50, 50, 60, 60, 2)))
    captured = {}
    orig = model.panoptic_loss

    def spy(logits, targets):
        captured["targets"] = targets
        return orig(logits, targets)

    model.panoptic_loss = spy
    head_forward = model.panoptic_head.forward

    def head_spy(features, att):
        captured["att"] = att
        return head_forward(features, att)

    model.panoptic_head.forward = head_spy
    slots_seen = set()
    for seed in range(3):
        torch.manual_seed(seed)
        with EventStorage():
            model([x])
        t = captured["targets"][0]
        masks = x["instances"].gt_masks.tensor
        slots = [t[m].unique().tolist() for m in masks]
        assert all(len(s) == 1 and 0 <= s[0] < 6 for s in slots)  # one slot per thing
        assert len({s[0] for s in slots}) == 3
        # The target channel of a thing is the input channel holding its attention mask, drawn
        # on the stride-8 grid: every 8x8 cell centred in the thing's box is lit in that channel
        # and in no other one (the boxes do not overlap).
        att = captured["att"][0]
        assert att.shape[-2:] == (8, 8)
        for m, (slot,) in zip(masks, slots):
            y, x_ = m.nonzero().float().mean(0).div(8).long().tolist()
            assert att[slot, y, x_] > 0 and (att[:, y, x_] > 0).sum() == 1
        slots_seen.add(tuple(s[0] for s in slots))
        # Stuff (contiguous 5 = stuff index 0) -> channel N_att + 0; unlabeled row -> N_att + 4 + 1.
        assert (t[1:][x["sem_seg"][1:] == 5] == 6).all() and (t[0] == 6 + 4 + 1).all()
        assert (t != IGNORE).all()
    assert len(slots_seen) > 1  # shuffled between iterations


def test_no_shuffle_keeps_score_order():
    model = build(GT_BOXES_AS_MASKS=True, SHUFFLE_MASKS=False)
    model.train()
    x = make_input(64, 64)
    captured = {}
    model.panoptic_loss = lambda logits, targets: captured.setdefault("t", targets).float().mean()
    with EventStorage():
        model([x])
    masks = x["instances"].gt_masks.tensor
    assert [captured["t"][0][m].unique().tolist() for m in masks] == [[0], [1]]


def test_images_without_things_and_without_stuff():
    model = build()
    model.train()
    no_things = make_input(48, 56, things=())
    no_stuff = make_input(48, 56, things=((0, 0, 48, 30, 0), (0, 30, 48, 56, 4)), stuff=None)
    with EventStorage():
        losses = model([no_things, no_stuff])
    assert all(torch.isfinite(v) for v in losses.values())
    model.eval()
    with torch.no_grad():
        out = model([no_things, no_stuff])
    for o in out:
        seg, info = o["panoptic_seg"]
        assert seg.shape == (48, 56)
        assert set(seg.unique().tolist()) - {0} == {s["id"] for s in info}


@pytest.mark.parametrize("size,orig", [((64, 64), (64, 64)), ((40, 72), (60, 108))])
def test_inference_format_at_the_original_size(size, orig):
    model = build()
    model.eval()
    model.detector.test_score_thresh = 0.0  # an untrained detector: keep every candidate
    x = make_input(*size, height=orig[0], width=orig[1])
    with torch.no_grad(), StageRecorder() as rec:
        out = model([x])
        stages = rec.pop()
    assert set(stages) == {"preprocess", "backbone", "heads", "postprocess"}
    seg, info = out[0]["panoptic_seg"]
    assert seg.dtype == torch.int32 and seg.shape == orig
    ids = {s["id"] for s in info}
    assert set(seg.unique().tolist()) - {0} == ids and len(ids) == len(info)
    for s in info:
        assert set(s) >= {"id", "category_id", "isthing"}
        if s["isthing"]:
            assert s["category_id"] in range(5) and 0 <= s["score"] <= 1
        else:
            assert s["category_id"] in range(5, 9)
        assert s["area"] == int((seg == s["id"]).sum())
    inst = out[0]["instances"]
    assert inst.image_size == orig and len(inst) == 6  # the N_att detections that got a mask
    assert (inst.pred_boxes.tensor[:, 2] <= orig[1] + 1e-3).all()
