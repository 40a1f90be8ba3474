"""SingleShotPanoptic: shapes of every head, losses, gradients, inference format (tiny model)."""
import pytest
import torch
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Instances

import fastpan_d2  # noqa: F401
from fastpan_d2.config import get_fastpan_cfg
from fastpan_d2.modeling.single_shot import SingleShotPanoptic

NUM_CLASSES, NUM_THINGS = 9, 5  # fastpan_shapes: things 0..4, stuff 5..8


def tiny_cfg(**single_shot):
    cfg = get_fastpan_cfg()
    cfg.merge_from_file("configs/Synthetic-PanopticSegmentation/single_shot.yaml")
    cfg.MODEL.FPN.OUT_CHANNELS = 32
    cfg.MODEL.SINGLE_SHOT.SEMANTIC.CONVS_DIM = 32
    cfg.MODEL.RESNETS.STEM_OUT_CHANNELS = 16
    cfg.MODEL.RETINANET.NUM_CONVS = 1
    for k, v in single_shot.items():
        node, key = cfg.MODEL.SINGLE_SHOT, k
        if "." in k:
            sub, key = k.split(".")
            node = node[sub]
        node[key] = v
    return cfg


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(tiny_cfg())


def make_input(h, w, things=True, stuff=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    sem = torch.full((h, w), 6 if stuff else 0, dtype=torch.long)
    masks = []
    if things:
        m0 = torch.zeros(h, w, dtype=torch.bool)
        m0[4:20, 5:30] = True
        m1 = torch.zeros(h, w, dtype=torch.bool)
        m1[15:40, 25:50] = True
        m0 &= ~m1
        masks = [m0, m1]
        sem[m0], sem[m1] = 0, 2
    if not stuff:  # every pixel is a thing: the whole image is one class-0 instance
        masks = [torch.ones(h, w, dtype=torch.bool)]
    inst = Instances((h, w))
    inst.gt_classes = torch.tensor([0, 2][: len(masks)], dtype=torch.long)
    inst.gt_masks = BitMasks(torch.stack(masks) if masks else torch.zeros(0, h, w, dtype=torch.bool))
    inst.gt_boxes = inst.gt_masks.get_bounding_boxes()
    image = torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8)
    return {"image": image, "sem_seg": sem, "instances": inst, "height": h, "width": w}


def test_registered_and_built_from_config(model):
    assert isinstance(model, SingleShotPanoptic)
    assert model.detector.in_features == ["p2", "p3", "p4", "p5", "p6", "p7"]
    assert model.detector.num_classes == NUM_THINGS
    assert model.sem_head.predictor.out_channels == NUM_CLASSES
    assert model.center_head.predictor.out_channels == 2
    assert model.sem_head.in_features == ["p2", "p3", "p4", "p5"]
    # GroupNorm in the semantic and centre branches
    gn = [m for m in model.sem_head.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert len(gn) == 1 + 1 + 2 + 3
    assert any(isinstance(m, torch.nn.GroupNorm) for m in model.center_head.modules())


@pytest.mark.parametrize("size", [(64, 64), (72, 100)])
def test_head_shapes(model, size):
    model.eval()
    batch = [make_input(*size)]
    with torch.no_grad():
        images = model.preprocess_image(batch)
        Hp, Wp = images.tensor.shape[-2:]
        assert Hp % 32 == 0 and Wp % 32 == 0 and Hp >= size[0] and Wp >= size[1]
        feats = model.backbone(images.tensor)
        sizes = [(Hp // 2 ** (i + 2), Wp // 2 ** (i + 2)) for i in range(4)]
        for _ in range(2):  # P6, P7: stride-2 3x3 convs (padding 1) on C5 / P6
            sizes.append(((sizes[-1][0] + 1) // 2, (sizes[-1][1] + 1) // 2))
        for name, (h, w) in zip(["p2", "p3", "p4", "p5", "p6", "p7"], sizes):
            assert feats[name].shape == (1, 32, h, w), name
        assert model.sem_head.layers(feats).shape == (1, NUM_CLASSES, Hp // 4, Wp // 4)
        assert model.center_head.layers(feats).shape == (1, 2, Hp // 4, Wp // 4)
        logits, deltas = model.detector.predict([feats[f] for f in model.detector.in_features])
        A = 9  # 3 scales x 3 aspect ratios
        for (h, w), lg, dl in zip(sizes, logits, deltas):
            n = h * w * A
            assert lg.shape == (1, n, NUM_THINGS) and dl.shape == (1, n, 4)


def test_training_losses_and_gradients():
    torch.manual_seed(0)
    model = build_model(tiny_cfg())
    model.train()
    losses = model([make_input(72, 100)])
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_sem_seg", "loss_center"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    names, params = zip(*model.named_parameters())

    def grads_of(loss):
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        return {n for n, g in zip(names, grads) if g is not None and g.abs().sum() > 0}

    every = grads_of(sum(losses.values()))
    for prefix in ("backbone.bottom_up.stem", "backbone.fpn_lateral2", "backbone.top_block.p7",
                   "sem_head.predictor", "sem_head.p5", "center_head.predictor", "center_head.p2",
                   "detector.head.cls_score", "detector.head.bbox_pred", "detector.head.cls_subnet"):
        assert any(n.startswith(prefix) for n in every), prefix
    # The branches are separate: each loss reaches its own branch and the shared backbone only.
    sem = grads_of(losses["loss_sem_seg"])
    assert not any(n.startswith(("detector.", "center_head.")) for n in sem)
    assert any(n.startswith("backbone.bottom_up") for n in sem)
    ctr = grads_of(losses["loss_center"])
    assert not any(n.startswith(("detector.", "sem_head.")) for n in ctr)
    assert any(n.startswith("center_head.p5") for n in ctr)
    det = grads_of(losses["loss_cls"])
    assert not any(n.startswith(("sem_head.", "center_head.")) for n in det)
    # P6/P7 only feed the detector
    assert not any(n.startswith("backbone.top_block") for n in sem | ctr)


def test_loss_weights_scale_the_losses():
    torch.manual_seed(0)
    base = build_model(tiny_cfg())
    torch.manual_seed(0)
    heavy = build_model(tiny_cfg(LAMBDA_O=1.0, LAMBDA_S=2.0, LAMBDA_I=1.0))
    base.train(), heavy.train()
    batch = [make_input(64, 64)]
    a, b = base(batch), heavy(batch)
    assert b["loss_sem_seg"].item() == pytest.approx(4 * a["loss_sem_seg"].item(), rel=1e-5)
    assert b["loss_cls"].item() == pytest.approx(2 * a["loss_cls"].item(), rel=1e-5)
    assert b["loss_center"].item() == pytest.approx(100 * a["loss_center"].item(), rel=1e-5)


def test_images_without_things_or_without_stuff_train():
    torch.manual_seed(0)
    model = build_model(tiny_cfg())
    model.train()
    losses = model([make_input(64, 64, things=False)])
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_center"].item() == 0.0 and losses["loss_box_reg"].item() == 0.0
    assert losses["loss_cls"].item() > 0 and losses["loss_sem_seg"].item() > 0
    losses = model([make_input(64, 64, stuff=False)])
    total = sum(losses.values())
    assert torch.isfinite(total) and losses["loss_center"].item() > 0
    total.backward()
    assert model.sem_head.predictor.weight.grad.abs().sum() > 0


def test_inference_format_at_original_size(model):
    model.eval()
    x = make_input(72, 100)
    x["height"], x["width"] = 144, 199  # the image was resized by the mapper: output at 144x199
    with torch.no_grad():
        (out,) = model([x])
    seg, info = out["panoptic_seg"]
    assert seg.shape == (144, 199) and seg.dtype == torch.int32
    assert out["sem_seg"].shape == (NUM_CLASSES, 144, 199)
    assert out["instances"].image_size == (144, 199)
    ids = set(torch.unique(seg).tolist()) - {0}
    assert ids == {s["id"] for s in info}
    for s in info:
        assert set(s) >= {"id", "category_id", "isthing"}
        assert s["isthing"] == (s["category_id"] < NUM_THINGS)


def test_inference_with_confident_detections_places_things():
    """Force one confident detection: its box and class must show up as a thing segment."""
    torch.manual_seed(0)
    model = build_model(tiny_cfg(**{"PANOPTIC.UNKNOWN": False, "PANOPTIC.STUFF_AREA_LIMIT": 0}))
    model.eval()
    with torch.no_grad():
        # semantic branch: class 0 (a thing) everywhere; detector: every anchor says class 3 weakly,
        # class 0 strongly -> after NMS detections of class 0 covering the image.
        model.sem_head.predictor.weight.zero_()
        model.sem_head.predictor.bias.copy_(torch.tensor([5.0, 0, 0, 0, 0, 1.0, 0, 0, 0]))
        model.detector.head.cls_score.weight.zero_()
        model.detector.head.cls_score.bias.fill_(-10.0)
        model.detector.head.cls_score.bias[0::NUM_THINGS] = 10.0
        (out,) = model([make_input(64, 64)])
    seg, info = out["panoptic_seg"]
    things = [s for s in info if s["isthing"]]
    assert things and all(s["category_id"] == 0 and s["score"] > 0.99 for s in things)
    # every pixel inside a detection box is a thing, every pixel outside all boxes is stuff 5
    boxes = out["instances"].pred_boxes.tensor
    from fastpan_d2.modeling.single_shot.panoptic_head import box_masks

    covered = box_masks(boxes, 64, 64).any(0)
    thing_ids = torch.tensor([s["id"] for s in things])
    assert torch.isin(seg[covered], thing_ids).all()
    stuff = [s for s in info if not s["isthing"]]
    if (~covered).any():
        assert [s["category_id"] for s in stuff] == [5]
        assert (seg[~covered] == stuff[0]["id"]).all()


def test_policy_needs_centre_branch():
    cfg = tiny_cfg(**{"CENTER_BRANCH.ENABLED": False})
    with pytest.raises(ValueError, match="closest_center"):
        build_model(cfg)
    cfg.MODEL.SINGLE_SHOT.PANOPTIC.OVERLAP_POLICY = "highest_confidence"
    m = build_model(cfg)
    assert m.center_head is None
    m.train()
    assert "loss_center" not in m([make_input(64, 64)])


@pytest.mark.parametrize(
    "name, policy, center",
    [("single_shot_R_50_576", "closest_center", True), ("single_shot_R_50_576_hc", "highest_confidence", False),
     ("single_shot_R_50_576_sf", "smallest_first", False)],
)
def test_paper_configs(name, policy, center):
    cfg = get_fastpan_cfg()
    cfg.merge_from_file(f"configs/COCO-PanopticSegmentation/{name}.yaml")
    ss = cfg.MODEL.SINGLE_SHOT
    assert cfg.MODEL.META_ARCHITECTURE == "SingleShotPanoptic"
    assert ss.PANOPTIC.OVERLAP_POLICY == policy and ss.CENTER_BRANCH.ENABLED == center
    assert (ss.LAMBDA_O, ss.LAMBDA_S) == (0.5, 0.5) and ss.PANOPTIC.SCORE_THRESH == 0.4
    assert ss.PANOPTIC.UNKNOWN and ss.PANOPTIC.STUFF_AREA_LIMIT == 4096
    assert cfg.MODEL.RETINANET.IN_FEATURES == ["p2", "p3", "p4", "p5", "p6", "p7"]
    assert len(cfg.MODEL.ANCHOR_GENERATOR.SIZES) == 6 and cfg.MODEL.RESNETS.NORM == "FrozenBN"
    assert (cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN) == ((576,), 864)
    assert cfg.SOLVER.OPTIMIZER == "ADAM" and tuple(cfg.SOLVER.BETAS) == (0.9, 0.99)
    # 14 epochs of COCO train2017 at the config's batch, x0.1 after epochs 7 and 10
    epoch = 118287 / cfg.SOLVER.IMS_PER_BATCH
    assert abs(cfg.SOLVER.MAX_ITER - 14 * epoch) < 1
    assert [abs(s - e * epoch) < 1 for s, e in zip(cfg.SOLVER.STEPS, (7, 10))] == [True, True]
    assert cfg.SOLVER.BASE_LR == pytest.approx(1e-5 * cfg.SOLVER.IMS_PER_BATCH / 4)
