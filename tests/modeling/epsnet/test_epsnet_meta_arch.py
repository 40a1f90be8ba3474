"""EPSNet end to end (tiny model): shapes, gradients, empty cases, output format."""
import pytest
import torch
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Boxes, Instances

import fastpan_d2  # noqa: F401  (registers EPSNet and the synthetic dataset)
from fastpan_d2.config import get_fastpan_cfg
from fastpan_d2.modeling.common.stage_timer import StageRecorder

CONFIG = "configs/Synthetic-PanopticSegmentation/epsnet.yaml"


def tiny_cfg(*opts):
    cfg = get_fastpan_cfg()
    cfg.merge_from_file(CONFIG)
    cfg.merge_from_list([
        "MODEL.FPN.OUT_CHANNELS", 32, "MODEL.EPSNET.HEAD_CHANNELS", 64, "MODEL.EPSNET.CLA_EMBED_CHANNELS", 16,
        "MODEL.EPSNET.NUM_PROTOTYPES", 8, *opts,
    ])
    return cfg


def build(*opts):
    torch.manual_seed(0)
    return build_model(tiny_cfg(*opts))


def make_input(h, w, things=True, stuff=True, out_size=None):
    """A hand-built training/inference dict: stuff 5 (left) and 6 (right), a square thing of class 1
    and a disc-ish thing of class 3 (synthetic layout: things 0-4, stuff 5-8)."""
    g = torch.Generator().manual_seed(h * 1000 + w)
    x = {"image": torch.randint(0, 255, (3, h, w), dtype=torch.uint8, generator=g)}
    sem = torch.full((h, w), 255, dtype=torch.long)
    if stuff:
        sem[:, : w // 2] = 5
        sem[:, w // 2:] = 6
    masks = torch.zeros(0, h, w, dtype=torch.bool)
    classes = []
    if things:
        masks = torch.zeros(2, h, w, dtype=torch.bool)
        masks[0, 4:h // 2, 4:w // 2] = True
        masks[1, h // 2:h - 3, w // 2:w - 5] = True
        classes = [1, 3]
        sem[masks[0]] = 1
        sem[masks[1]] = 3
    inst = Instances((h, w))
    inst.gt_classes = torch.tensor(classes, dtype=torch.long)
    inst.gt_masks = BitMasks(masks)
    inst.gt_boxes = inst.gt_masks.get_bounding_boxes() if things else Boxes(torch.zeros(0, 4))
    x.update({"instances": inst, "sem_seg": sem, "height": (out_size or (h, w))[0], "width": (out_size or (h, w))[1]})
    return x


@pytest.fixture(scope="module")
def model():
    return build()


@pytest.mark.parametrize("size", [(64, 64), (72, 100)])
def test_shapes_of_every_head(model, size):
    h, w = size
    model.eval()
    images = model.preprocess_image([make_input(h, w)])
    ph, pw = images.tensor.shape[-2:]
    assert (ph % 32, pw % 32) == (0, 0)
    with torch.no_grad():
        out = model.predict(images)
    assert out["protos"].shape == (1, 8, ph // 4, pw // 4)  # k prototypes at 1/4
    assert out["sem_logits"].shape == (1, 5, ph // 4, pw // 4)  # 4 stuff + 'other'
    a = sum(3 * ((ph + s - 1) // s) * ((pw + s - 1) // s) for s in (8, 16, 32, 64, 128))
    assert len(out["anchors"]) == a
    assert out["cls"].shape == (1, a, 5) and out["deltas"].shape == (1, a, 4) and out["coefs"].shape == (1, a, 8)
    z = model.fusion(model.backbone(images.tensor))
    assert z.shape == (1, 32, ph // 8, pw // 8)


def test_gradients_flow_where_they_should():
    m = build()
    m.train()
    batch = [make_input(64, 64), make_input(72, 100)]
    losses = m(batch)
    assert set(losses) == {"loss_cls", "loss_box", "loss_mask", "loss_sem"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())

    def grads(loss):
        m.zero_grad(set_to_none=True)
        loss.backward(retain_graph=True)
        return {n: p.grad is not None and p.grad.abs().sum() > 0 for n, p in m.named_parameters()}

    g = grads(sum(losses.values()))
    missing = [n for n, ok in g.items() if not ok]
    assert not missing, missing
    # The mask loss trains coefficients, prototypes, fusion and backbone, not boxes/classes/semantics.
    g = grads(losses["loss_mask"])
    assert g["instance_head.coef.weight"] and g["proto_head.out.weight"] and g["fusion.blocks.0.v.weight"]
    assert not g["instance_head.cls.weight"] and not g["instance_head.bbox.weight"]
    assert not any(v for n, v in g.items() if n.startswith("semantic_head."))
    # The semantic loss trains the semantic head and the shared prototypes, not the instance head.
    g = grads(losses["loss_sem"])
    assert g["semantic_head.conv2.weight"] and g["proto_head.out.weight"]
    assert not any(v for n, v in g.items() if n.startswith("instance_head."))
    # Classification does not reach the prototypes.
    g = grads(losses["loss_cls"])
    assert g["instance_head.cls.weight"] and not any(v for n, v in g.items() if n.startswith("proto_head."))


def test_loss_balance_switch():
    m = build()
    assert m.loss_weights == {"loss_cls": 1.0, "loss_box": 1.5, "loss_mask": 6.125, "loss_sem": 2.0}
    m1 = build("MODEL.EPSNET.LOSS_BALANCE", False)
    assert set(m1.loss_weights.values()) == {1.0}


def test_training_with_no_things_and_no_stuff(model):
    model.train()
    losses = model([make_input(64, 64, things=False), make_input(64, 64, stuff=False)])
    assert all(torch.isfinite(v) for v in losses.values())
    losses = model([make_input(64, 64, things=False)])
    assert losses["loss_box"].item() == 0.0 and losses["loss_mask"].item() == 0.0


@pytest.mark.parametrize("nms", ["fast", "standard"])
def test_inference_format_at_original_size(nms):
    m = build("MODEL.EPSNET.NMS_TYPE", nms, "MODEL.EPSNET.SCORE_THRESH", 0.0,
              "MODEL.EPSNET.INSTANCE_SCORE_THRESH", 0.0, "MODEL.EPSNET.STUFF_AREA_THRESH", 0)
    m.eval()
    inputs = [make_input(72, 100, out_size=(90, 130)), make_input(64, 64, things=False)]
    with torch.no_grad(), StageRecorder() as rec:
        outs = m(inputs)
        stages = rec.pop()
    assert set(stages) == {"preprocess", "backbone", "heads", "postprocess"}
    for x, out in zip(inputs, outs):
        seg, info = out["panoptic_seg"]
        assert seg.dtype == torch.int32 and seg.shape == (x["height"], x["width"])
        assert out["sem_seg"].shape == (5, x["height"], x["width"])
        inst = out["instances"]
        assert inst.image_size == (x["height"], x["width"])
        assert inst.pred_masks.shape[1:] == (x["height"], x["width"])
        assert len(inst) > 0  # every score passes a 0 threshold
        assert (inst.pred_boxes.tensor[:, 2] <= x["width"]).all() and (inst.pred_boxes.tensor[:, 3] <= x["height"]).all()
        ids = {s["id"] for s in info}
        assert set(seg.unique().tolist()) - {0} == ids
        for s in info:
            assert set(s) >= {"id", "category_id", "isthing"}
            assert s["isthing"] == (s["category_id"] < 5)
            if s["isthing"]:
                assert isinstance(s["score"], float)
            else:
                assert s["area"] == int((seg == s["id"]).sum())


@pytest.mark.parametrize("opts", [
    ("MODEL.EPSNET.FUSION", "PanopticFPN"),
    ("MODEL.EPSNET.SEM_HEAD", "standard"),
    ("MODEL.EPSNET.CLA_SOURCES", ["p3"], "MODEL.EPSNET.SEM_POOLING", "center"),
])
def test_switches_build_train_and_infer(opts):
    m = build(*opts)
    m.train()
    losses = m([make_input(64, 64)])
    assert all(torch.isfinite(v) for v in losses.values())
    m.eval()
    with torch.no_grad():
        out = m([make_input(72, 100)])[0]
    assert out["panoptic_seg"][0].shape == (72, 100)
