"""LPSNet end to end at toy size: backbone/head shapes, gradients, edge cases, output format."""
import pytest
import torch
from detectron2.modeling import build_backbone, build_model
from detectron2.layers import ShapeSpec
from detectron2.structures import BitMasks, Instances

from fastpan_d2.config import get_fastpan_cfg

NUM_CLASSES = 9  # fastpan_shapes: things 0-4, stuff 5-8


def tiny_cfg(**overrides):
    cfg = get_fastpan_cfg()
    cfg.merge_from_file("configs/Synthetic-PanopticSegmentation/lpsnet.yaml")
    cfg.merge_from_list([
        "MODEL.FPN.OUT_CHANNELS", 32, "MODEL.PPM_FPN.PPM_CHANNELS", 8,
        "MODEL.LPSNET.SEM_SEG_CONVS_DIM", 16, "MODEL.LPSNET.NUM_CONVS", 2,
        "MODEL.LPSNET.SEM_SEG_DEFORMABLE", True,  # the paper's head (the synthetic config has plain convs)
    ])
    for k, v in overrides.items():
        cfg.merge_from_list([k, v])
    return cfg


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(tiny_cfg())


def make_input(h, w, things=True, stuff=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 255, (3, h, w), generator=g, dtype=torch.uint8)
    sem = torch.full((h, w), 5 if stuff else 255, dtype=torch.long)
    masks = []
    if things:
        m = torch.zeros(h, w, dtype=torch.bool)
        m[4:20, 6:30] = True
        masks.append(m)
        m = torch.zeros(h, w, dtype=torch.bool)
        m[h - 20:h - 2, w - 24:w - 4] = True
        masks.append(m)
        sem[masks[0]] = 0
        sem[masks[1]] = 3
    if not stuff:
        sem[sem == 255] = 255  # unlabeled background: ignored by the semantic loss
    inst = Instances((h, w))
    bm = BitMasks(torch.stack(masks) if masks else torch.zeros(0, h, w, dtype=torch.bool))
    inst.gt_masks = bm
    inst.gt_boxes = bm.get_bounding_boxes()
    inst.gt_classes = torch.tensor([0, 3][: len(masks)], dtype=torch.long)
    return {"image": image, "sem_seg": sem, "instances": inst, "height": h, "width": w}


@pytest.mark.parametrize("context", ["PPM", "GAP", "NONE"])
def test_ppm_fpn_backbone_levels(context):
    cfg = tiny_cfg(**{"MODEL.PPM_FPN.CONTEXT": context})
    bb = build_backbone(cfg, ShapeSpec(channels=3))
    out = bb(torch.randn(1, 3, 64, 96))
    assert list(out) == ["p2", "p3", "p4", "p5", "p6", "p7"]
    sizes = {k: tuple(v.shape[-2:]) for k, v in out.items()}
    assert sizes == {"p2": (16, 24), "p3": (8, 12), "p4": (4, 6), "p5": (2, 3), "p6": (1, 2), "p7": (1, 1)}
    assert all(v.shape[1] == 32 for v in out.values())
    assert {k: s.stride for k, s in bb.output_shape().items()} == {
        "p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64, "p7": 128}
    has_context = any(n.startswith("context.") for n, _ in bb.named_parameters())
    assert has_context == (context != "NONE")


def test_context_is_added_before_p5():
    cfg = tiny_cfg()
    bb = build_backbone(cfg, ShapeSpec(channels=3)).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = bb(x)
        for p in bb.context.parameters():
            p.zero_()  # context contributes relu(0) = 0: plain FPN
        plain = bb(x)
    assert not torch.allclose(ref["p5"], plain["p5"])
    assert not torch.allclose(ref["p2"], plain["p2"])  # carried down the top-down pathway


@pytest.mark.parametrize("size", [(64, 64), (50, 75)])
def test_head_shapes_and_output_format(model, size):
    h, w = size
    model.eval()
    inp = make_input(h, w)
    inp["height"], inp["width"] = 2 * h + 1, 2 * w  # original size differs from the input size
    with torch.no_grad():
        images = model.preprocess_image([inp])
        H, W = images.tensor.shape[-2:]
        assert (H, W) == (64, 64) if size == (64, 64) else (H, W) == (64, 96)
        feats = model.backbone(images.tensor)
        locations, ltrb, border, sem = model.predict(feats, images.tensor.device)
        for s, l, d, b in zip(model.strides, locations, ltrb, border):
            n = ((H + s - 1) // s) * ((W + s - 1) // s)
            assert l.shape == (n, 2) and d.shape == (1, n, 4) and b.shape == (1, n)
            assert (d >= 0).all()
        assert sem.shape == (1, NUM_CLASSES, H // 4, W // 4)
        out = model([inp])[0]
    seg, info = out["panoptic_seg"]
    assert seg.shape == (2 * h + 1, 2 * w) and seg.dtype == torch.int32
    assert out["sem_seg"].shape == (NUM_CLASSES, 2 * h + 1, 2 * w)
    assert out["instances"].image_size == (2 * h + 1, 2 * w)
    ids = set(torch.unique(seg).tolist()) - {0}
    assert ids == {s["id"] for s in info}
    for s in info:
        assert s["isthing"] == (s["category_id"] < 5)
        assert ("score" in s) == s["isthing"]


def test_gradients_reach_what_learns_and_stay_separate(model):
    model.train()
    losses = model([make_input(64, 64), make_input(50, 75, seed=1)])
    assert set(losses) == {"loss_box", "loss_borderness", "loss_sem_seg"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    params = dict(model.named_parameters())

    def grads(loss):
        g = torch.autograd.grad(loss, list(params.values()), retain_graph=True, allow_unused=True)
        return {n: (x is not None and x.abs().sum() > 0) for n, x in zip(params, g)}

    total = grads(sum(losses.values()))
    for prefix in ["backbone.bottom_up.stem", "backbone.bottom_up.res5", "backbone.context", "backbone.fpn_lateral5",
                   "backbone.top_block.p7", "box_head.tower", "box_head.box_pred", "box_head.borderness_pred",
                   "box_head.scales.0", "sem_seg_head.subnets.0.0.weight", "sem_seg_head.subnets.0.0.offset_conv",
                   "sem_seg_head.predictor"]:
        hit = [n for n in params if n.startswith(prefix)]
        assert hit and all(total[n] for n in hit), prefix
    sem_only = grads(losses["loss_sem_seg"])
    assert not any(sem_only[n] for n in params if n.startswith("box_head."))
    assert not sem_only["backbone.top_block.p7.weight"]  # P6/P7 only feed the box head
    box_only = grads(losses["loss_box"])
    assert not any(box_only[n] for n in params if n.startswith(("sem_seg_head.", "box_head.borderness_pred")))
    border_only = grads(losses["loss_borderness"])
    assert not any(border_only[n] for n in params if n.startswith(("sem_seg_head.", "box_head.box_pred")))
    assert not any(p.requires_grad for p in [])  # the panoptic head has no parameters at all
    assert not hasattr(model.panoptic_head, "parameters")


def test_image_without_things_and_image_without_stuff(model):
    model.train()
    losses = model([make_input(64, 64, things=False)])
    assert losses["loss_box"].item() == 0.0  # no positive location
    assert losses["loss_borderness"].item() > 0  # negatives still learn "nothing here"
    assert torch.isfinite(losses["loss_sem_seg"])
    sum(losses.values()).backward()
    losses = model([make_input(64, 64, stuff=False)])  # only things labelled, rest ignored
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    model.zero_grad()


def test_paper_configs_carry_the_paper_settings():
    import glob

    files = sorted(glob.glob("configs/*/lpsnet_*.yaml"))
    assert len(files) == 9
    for f in files:
        cfg = get_fastpan_cfg()
        cfg.merge_from_file(f)
        assert cfg.MODEL.META_ARCHITECTURE == "LPSNet"
        assert cfg.MODEL.BACKBONE.NAME == "build_resnet_ppm_fpn_backbone"
        assert cfg.SOLVER.IMS_PER_BATCH == 16 and cfg.SOLVER.BASE_LR == 0.01 and cfg.SOLVER.MOMENTUM == 0.9
        assert cfg.MODEL.LPSNET.PANOPTIC.OVERLAP_THRESH == 0.3
        if "COCO" in f:
            assert cfg.SOLVER.MAX_ITER == 90000 and tuple(cfg.SOLVER.STEPS) == (60000, 80000)
            assert cfg.MODEL.LPSNET.SEM_SEG_LOSS_WEIGHT == 0.7
            size = int(f.rsplit("_", 1)[1][:-5])
            assert cfg.INPUT.MIN_SIZE_TEST == size and tuple(cfg.INPUT.MIN_SIZE_TRAIN) == (size,)
            assert cfg.MODEL.RESNETS.DEPTH == (101 if "R_101" in f else 50)
        elif "Cityscapes" in f:
            assert cfg.SOLVER.MAX_ITER == 12000 and tuple(cfg.SOLVER.STEPS) == (9000,)
            assert cfg.MODEL.LPSNET.SEM_SEG_LOSS_WEIGHT == 1.0
        else:
            assert cfg.SOLVER.MAX_ITER == 192000 and tuple(cfg.SOLVER.STEPS) == (144000, 176000)
            assert tuple(cfg.INPUT.CROP.SIZE) == (400, 800)


def test_box_class_and_score_come_from_the_semantic_head(model):
    locations = [torch.tensor([[4.0, 4.0], [12.0, 4.0], [20.0, 4.0]])]
    ltrb = [torch.tensor([[2.0, 3.0, 4.0, 5.0], [1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]])]
    border = [torch.tensor([0.0, 0.0, 5.0])]
    sem = torch.zeros(NUM_CLASSES, 4, 8)
    sem[3, 1, 1] = 10.0  # location (4, 4) -> 1/4 cell (1, 1): thing class 3
    sem[6, 1, 3] = 10.0  # location (12, 4) -> cell (1, 3): stuff -> thing confidence ~5e-5, dropped
    sem[1, 1, 5] = 10.0  # location (20, 4) lies outside the 16x16 image (padding) -> dropped
    inst = model.decode_boxes(locations, ltrb, border, sem, (16, 16))
    assert len(inst) == 1
    assert inst.pred_classes.tolist() == [3]
    p = torch.exp(torch.tensor(10.0)) / (torch.exp(torch.tensor(10.0)) + NUM_CLASSES - 1)
    assert inst.scores.item() == pytest.approx(0.5 * p.item(), rel=1e-5)
    assert inst.borderness.item() == pytest.approx(0.5)
    assert inst.pred_boxes.tensor.tolist() == [[2.0, 1.0, 8.0, 9.0]]


def test_score_threshold_applies_to_the_class_confidence_as_in_fcos(model):
    """FCOS keeps the candidates whose class score passes the threshold and only then multiplies
    by centre-ness (here border-ness): a confident class at a low border-ness stays a candidate
    (with a low score), an unconfident class is dropped whatever its border-ness."""
    locations = [torch.tensor([[4.0, 4.0], [12.0, 4.0]])]
    ltrb = [torch.ones(2, 4)]
    border = [torch.tensor([-6.0, 8.0])]  # sigmoid: 0.0025 and 0.9997
    sem = torch.zeros(NUM_CLASSES, 4, 8)
    sem[2, 1, 1] = 10.0  # (4, 4): class 2 at confidence ~0.9996, score ~0.0025 < 0.05
    sem[6, 1, 3] = 10.0  # (12, 4): stuff; the best thing class has confidence ~5e-5
    inst = model.decode_boxes(locations, ltrb, border, sem, (16, 16))
    assert inst.pred_classes.tolist() == [2]
    assert inst.scores.item() == pytest.approx(torch.sigmoid(torch.tensor(-6.0)).item(), rel=1e-2)


def test_offset_lr_factor_sets_the_lr_of_only_the_offset_convs():
    """SEM_SEG_OFFSET_LR_FACTOR (DCN's beta): the optimizer gives the deformable convs' offset/mask
    convs BASE_LR x the factor, and every other parameter of the head BASE_LR."""
    from fastpan_d2.config import get_fastpan_cfg
    from fastpan_d2.engine import build_optimizer
    from fastpan_d2.modeling.lpsnet.heads import LPSNetSemSegHead

    shapes = {f"p{i}": ShapeSpec(channels=8, stride=2 ** i) for i in (2, 3)}
    head = LPSNetSemSegHead(input_shape=shapes, num_classes=3, conv_dims=8, num_convs=1, offset_lr_factor=0.1)
    cfg = get_fastpan_cfg()
    cfg.SOLVER.BASE_LR = 0.02
    opt = build_optimizer(cfg, head)
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    names = [n for n, _ in head.named_parameters()]
    assert any(".offset_conv." in n for n in names)
    for n, p in head.named_parameters():
        assert lr_of[id(p)] == pytest.approx(0.002 if ".offset_conv." in n else 0.02), n
