"""YOSO meta-arch: shapes at two input sizes, losses on images without things / stuff,
gradients, inference output format at the original size, stage timing, IFA->CFA at model level."""

import pytest
import torch
from detectron2.modeling import build_model

import fastpan_d2  # noqa: F401
from fastpan_d2.modeling.common.stage_timer import STAGES, StageRecorder
from fastpan_d2.modeling.yoso import YOSO
from fastpan_d2.modeling.yoso.aggregator import ifa_to_cfa_state_dict

from .yoso_testutils import make_input, tiny_cfg

# synthetic categories: things 0..4, stuff 5..8
MIXED = [(5, (0, 64, 0, 96)), (6, (32, 64, 0, 96)), (0, (5, 20, 5, 25)), (2, (30, 50, 40, 70))]
NO_THINGS = [(5, (0, 50, 0, 75)), (8, (20, 50, 30, 75))]
NO_STUFF = [(1, (4, 20, 4, 20)), (1, (10, 30, 10, 30)), (4, (30, 45, 50, 70))]


@pytest.fixture(scope="module")
def model(repo_root_module):
    torch.manual_seed(0)
    return build_model(tiny_cfg(repo_root_module))


@pytest.fixture(scope="module")
def repo_root_module():
    import os

    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def test_registered_and_built(model):
    assert isinstance(model, YOSO)
    assert model.aggregator.aggregation == "CFA" and len(model.decoder.stages) == 2
    assert model.decoder.proposal_kernels.shape == (10, 16)


@pytest.mark.parametrize("hw", [(64, 64), (50, 75)])  # 50x75: sides not multiples of 32
def test_head_shapes(model, hw):
    model.eval()
    x = make_input(*hw, MIXED)
    images = model.preprocess_image([x])
    Hp, Wp = images.tensor.shape[-2:]
    assert Hp % 32 == 0 and Wp % 32 == 0
    with torch.no_grad():
        feats = model.backbone(images.tensor)
        S = model.aggregator([feats[f] for f in model.in_features])
        outs = model.decoder(S)
    assert S.shape == (1, 16, Hp // 4, Wp // 4)
    assert len(outs) == 2
    for cls, masks in outs:
        assert cls.shape == (1, 10, 9 + 1) and masks.shape == (1, 10, Hp // 4, Wp // 4)


def test_training_losses_and_gradients(model):
    model.train()
    batch = [make_input(64, 64, MIXED, 0), make_input(50, 75, NO_THINGS, 1), make_input(50, 75, NO_STUFF, 2)]
    model.zero_grad()
    losses = model(batch)
    assert set(losses) == {f"loss_{k}_s{s}" for k in ("ce", "mask", "dice") for s in (0, 1)}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    named = dict(model.named_parameters())
    no_grad = [n for n, p in named.items() if p.grad is None or p.grad.abs().sum() == 0]
    # every parameter learns, incl. the backbone, the DCN offset predictors and the proposal kernels,
    # EXCEPT stage 0's class/mask FFNs... which do learn (deep supervision at every stage):
    assert no_grad == [], no_grad
    for key in ("backbone.stem.conv1.weight", "aggregator.top_down.0.offset_conv.weight",
                "decoder.proposal_kernels", "decoder.stages.0.cls_out.weight", "decoder.stages.1.mask_out.weight"):
        assert named[key].grad.abs().sum() > 0, key


def test_hard_attention_maps_pass_no_gradient(model):
    """Pre-attention thresholds the previous masks: stage 1's loss must not reach stage 0's mask
    kernels through the attention maps (only through the refined kernels Q)."""
    model.train()
    images = model.preprocess_image([make_input(64, 64, MIXED)])
    feats = model.backbone(images.tensor)
    S = model.aggregator([feats[f] for f in model.in_features]).detach()
    stage0, stage1 = model.decoder.stages
    q0 = model.decoder.proposal_kernels[None]
    attn0 = torch.bmm(q0, S.flatten(2)).view(1, -1, *S.shape[-2:])
    q1, _, masks0 = stage0(q0.detach(), attn0, S)
    model.zero_grad()
    _, _, masks1 = stage1(q1.detach(), masks0, S)
    masks1.sum().backward()
    assert stage0.mask_out.weight.grad is None
    assert stage1.mask_out.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("inputs", [[(64, 64, MIXED)], [(50, 75, NO_THINGS), (50, 75, NO_STUFF)]])
def test_inference_format_at_original_size(model, inputs):
    model.eval()
    batch = []
    for h, w, segs in inputs:
        x = make_input(h, w, segs)
        x["height"], x["width"] = 2 * h + 1, 3 * w  # the original size differs from the input size
        batch.append(x)
    with torch.no_grad(), StageRecorder() as rec:
        outs = model(batch)
        stages = rec.pop()
    assert set(stages) == set(STAGES)
    assert len(outs) == len(batch)
    for x, out in zip(batch, outs):
        seg, info = out["panoptic_seg"]
        assert seg.dtype == torch.int32 and seg.shape == (x["height"], x["width"])
        ids = set(seg.unique().tolist()) - {0}
        assert ids == {s["id"] for s in info}
        for s in info:
            assert set(s) >= {"id", "category_id", "isthing", "score"}
            assert s["isthing"] == (s["category_id"] < 5)


def test_inference_with_confident_queries_produces_segments(model):
    """Force the classifier of the last stage to be confident: segments must come out, stuff of one
    class merged into one segment."""
    model.eval()
    cls_out, mask_out = model.decoder.stages[-1].cls_out, model.decoder.stages[-1].mask_out
    saved = [t.data.clone() for t in (cls_out.weight, cls_out.bias, mask_out.weight, mask_out.bias)]
    try:
        cls_out.weight.data.zero_()
        cls_out.bias.data.fill_(-10.0)
        cls_out.bias.data[6] = 10.0  # every query: stuff class 6
        mask_out.weight.data.zero_()
        mask_out.bias.data.fill_(1.0)  # kernel of ones: mask = sum of S (>= 0, ReLU) -> "on" everywhere
        with torch.no_grad():
            seg, info = model([make_input(64, 64, MIXED)])[0]["panoptic_seg"]
        assert len(info) == 1 and info[0]["category_id"] == 6 and not info[0]["isthing"]
        assert set(seg.unique().tolist()) <= {0, 1}
    finally:
        for t, v in zip((cls_out.weight, cls_out.bias, mask_out.weight, mask_out.bias), saved):
            t.data.copy_(v)


def test_semantic_and_instance_outputs(repo_root_module):
    cfg = tiny_cfg(repo_root_module, "MODEL.YOSO.TEST.SEMANTIC_ON", True, "MODEL.YOSO.TEST.INSTANCE_ON", True,
                   "MODEL.YOSO.TEST.OBJECT_MASK_THRESHOLD", 0.0)
    m = build_model(cfg).eval()
    with torch.no_grad():
        out = m([make_input(50, 75, MIXED)])[0]
    assert out["sem_seg"].shape == (9, 50, 75)
    inst = out["instances"]
    assert inst.image_size == (50, 75) and inst.pred_masks.shape[1:] == (50, 75)
    assert (inst.pred_classes >= 0).all() and (inst.pred_classes < 5).all()


def test_ifa_model_converts_to_cfa_model(repo_root_module):
    torch.manual_seed(0)
    ifa = build_model(tiny_cfg(repo_root_module, "MODEL.YOSO.AGGREGATOR.AGGREGATION", "IFA")).eval()
    cfa = build_model(tiny_cfg(repo_root_module)).eval()
    cfa.load_state_dict(ifa_to_cfa_state_dict(ifa.state_dict(), [8, 8, 16, 16]))
    x = [make_input(50, 75, MIXED)]
    with torch.no_grad():
        a = ifa.predict(ifa.preprocess_image(x))[-1]
        b = cfa.predict(cfa.preprocess_image(x))[-1]
    torch.testing.assert_close(a[0], b[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(a[1], b[1], atol=1e-3, rtol=1e-4)


def test_aux_semantic_loss_is_training_only(repo_root_module):
    torch.manual_seed(0)
    m = build_model(tiny_cfg(repo_root_module, "MODEL.YOSO.AUX_SEMANTIC_WEIGHT", 0.5)).train()
    losses = m([make_input(64, 64, MIXED)])
    assert "loss_aux_sem" in losses and losses["loss_aux_sem"] > 0
    m.zero_grad()
    losses["loss_aux_sem"].backward()
    assert m.aux_semantic.predictor.weight.grad.abs().sum() > 0
    assert m.backbone.stem.conv1.weight.grad.abs().sum() > 0
    m.eval()
    with torch.no_grad():
        assert "panoptic_seg" in m([make_input(64, 64, MIXED)])[0]


def test_shared_heads(repo_root_module):
    """SHARE_HEADS: one class / mask-kernel FFN for all stages, so the same kernel gives the same
    class logits and mask at every stage; without it each stage has its own."""
    torch.manual_seed(0)
    shared = build_model(tiny_cfg(repo_root_module, "MODEL.YOSO.SHARE_HEADS", True)).decoder
    torch.manual_seed(0)
    separate = build_model(tiny_cfg(repo_root_module)).decoder
    s0, s1 = shared.stages
    for name in ("cls_fcs", "cls_out", "mask_fcs", "mask_out"):
        assert getattr(s0, name) is getattr(s1, name)
        assert getattr(separate.stages[0], name) is not getattr(separate.stages[1], name)
    head_params = sum(p.numel() for n in ("cls_fcs", "cls_out", "mask_fcs", "mask_out") for p in getattr(s0, n).parameters())
    n_shared = sum(p.numel() for p in shared.parameters())
    assert sum(p.numel() for p in separate.parameters()) - n_shared == head_params
    q = torch.randn(1, 10, 16)
    for a, b in ((s0, s1),):
        torch.testing.assert_close(a.cls_out(a.cls_fcs(q)), b.cls_out(b.cls_fcs(q)))
        torch.testing.assert_close(a.mask_out(a.mask_fcs(q)), b.mask_out(b.mask_fcs(q)))
    # a state dict saved with shared heads loads back (the shared tensors appear under both stages)
    torch.manual_seed(1)
    again = build_model(tiny_cfg(repo_root_module, "MODEL.YOSO.SHARE_HEADS", True)).decoder
    again.load_state_dict(shared.state_dict())
    assert again.stages[1].cls_out is again.stages[0].cls_out
    torch.testing.assert_close(again.stages[1].cls_out.weight, s0.cls_out.weight)
