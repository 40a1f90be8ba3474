"""EPSNet fusion (CLA, Panoptic-FPN) and heads: known answers and shapes."""
import math

import pytest
import torch
from torch import nn

from fastpan_d2.modeling.epsnet.fusion import CLAFusion, CrossAttentionBlock, PanopticFPNFusion
from fastpan_d2.modeling.epsnet.heads import (
    CoefficientSemanticHead,
    InstanceHead,
    ProtoHead,
    StandardSemanticHead,
)


def _identity_1x1(conv: nn.Conv2d):
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    n = min(conv.in_channels, conv.out_channels)
    with torch.no_grad():
        conv.weight[:n, :n, 0, 0] = torch.eye(n)


def test_cross_attention_block_known_answer():
    # 1 channel, θ = φ = h = v = identity. Target has one position with value t; source has two
    # positions o1, o2. A = (e^{t o1} o1 + e^{t o2} o2) / (e^{t o1} + e^{t o2}).
    blk = CrossAttentionBlock(1, embed_channels=1)
    for m in (blk.theta, blk.phi, blk.h, blk.v):
        _identity_1x1(m)
    t, o1, o2 = 1.0, 2.0, -1.0
    target = torch.tensor([t]).view(1, 1, 1, 1)
    source = torch.tensor([o1, o2]).view(1, 1, 1, 2)
    w1, w2 = math.exp(t * o1), math.exp(t * o2)
    expected = (w1 * o1 + w2 * o2) / (w1 + w2)
    out = blk(target, source)
    assert out.shape == (1, 1, 1, 1)
    assert out.item() == pytest.approx(expected, rel=1e-5)


def test_cross_attention_matches_explicit_softmax_and_keeps_target_shape():
    torch.manual_seed(0)
    blk = CrossAttentionBlock(8, embed_channels=4)
    for m in (blk.theta, blk.phi, blk.h, blk.v):
        nn.init.normal_(m.weight, std=0.3)
    t = torch.randn(2, 8, 5, 7)
    o = torch.randn(2, 8, 3, 4)
    q = blk.theta(t).flatten(2)  # (N, E, Nt)
    k = blk.phi(o).flatten(2)
    v = blk.h(o).flatten(2)
    alpha = torch.softmax(q.transpose(1, 2) @ k, dim=-1)  # softmax over source positions j
    expected = blk.v((v @ alpha.transpose(1, 2)).view(2, 4, 5, 7))
    out = blk(t, o)
    assert out.shape == t.shape
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


def test_cla_fusion_sums_blocks_plus_residual_and_shares_weights():
    torch.manual_seed(0)
    feats = {"p3": torch.randn(1, 8, 9, 13), "p4": torch.randn(1, 8, 5, 7), "p5": torch.randn(1, 8, 3, 4)}
    fusion = CLAFusion(8, ["p5", "p4", "p3"], "p3", embed_channels=4, shared=True)
    assert len(fusion.blocks) == 1
    blk = fusion.blocks[0]
    expected = feats["p3"] + sum(blk(feats["p3"], feats[s]) for s in ("p5", "p4", "p3"))
    torch.testing.assert_close(fusion(feats), expected)
    # With v = 0 every attention term vanishes: Z = F3 (the residual of Eq. 5).
    nn.init.zeros_(blk.v.weight)
    torch.testing.assert_close(fusion(feats), feats["p3"])
    assert len(CLAFusion(8, ["p5", "p4", "p3"], shared=False).blocks) == 3


@pytest.mark.parametrize("size", [(64, 64), (72, 104)])
def test_panoptic_fpn_fusion_shapes_and_depths(size):
    h, w = size
    feats = {
        "p3": torch.randn(1, 32, math.ceil(h / 8), math.ceil(w / 8)),
        "p4": torch.randn(1, 32, math.ceil(h / 16), math.ceil(w / 16)),
        "p5": torch.randn(1, 32, math.ceil(h / 32), math.ceil(w / 32)),
    }
    fusion = PanopticFPNFusion(32, ["p3", "p4", "p5"], norm="GN")
    assert [len(b) for b in fusion.branches] == [1, 2, 3]  # F3, F4, F5: 1, 2, 3 conv blocks
    assert fusion(feats).shape == feats["p3"].shape


@pytest.mark.parametrize("size", [(8, 8), (9, 13)])
def test_proto_and_instance_head_shapes(size):
    h, w = size
    proto = ProtoHead(32, 32, num_prototypes=16, num_convs=3, norm="GN")
    p = proto(torch.randn(2, 32, h, w))
    assert p.shape == (2, 16, 2 * h, 2 * w)  # 1/8 -> 1/4
    assert (p >= 0).all()  # ReLU prototypes (YOLACT)
    assert len([m for m in proto.convs if isinstance(m, nn.Conv2d)]) == 3
    head = InstanceHead(32, 32, num_anchors=3, num_classes=5, num_prototypes=16, norm="GN")
    levels = [torch.randn(2, 32, h, w), torch.randn(2, 32, (h + 1) // 2, (w + 1) // 2)]
    cls, box, coef = head(levels)
    a = 3 * (h * w + ((h + 1) // 2) * ((w + 1) // 2))
    assert cls.shape == (2, a, 5) and box.shape == (2, a, 4) and coef.shape == (2, a, 16)
    assert coef.abs().max() <= 1.0  # tanh coefficients
    # Anchor order (level, y, x, anchor): row 3*(y*w+x)+a of level 0 is channel a*C.. at (y, x).
    t = head.tower(levels[0])
    raw = head.cls(t)
    y, x, an = h - 1, w - 2, 2
    torch.testing.assert_close(cls[:, 3 * (y * w + x) + an], raw[:, an * 5:(an + 1) * 5, y, x])


@pytest.mark.parametrize("size", [(5, 5), (3, 7), (1, 1)])
def test_coefficient_semantic_head_shapes(size):
    head = CoefficientSemanticHead(32, 32, num_prototypes=8, num_classes=4, norm="GN")
    y = head(torch.randn(2, 32, *size))
    assert y.shape == (2, 8, 4)
    protos = torch.randn(2, 8, 20, 26)
    logits = head.logits(protos, y)
    assert logits.shape == (2, 4, 20, 26)
    torch.testing.assert_close(logits[1, 3, 5, 7], (protos[1, :, 5, 7] * y[1, :, 3]).sum())


@pytest.mark.parametrize(
    "pooling,expected",
    [("avg", 4.0), ("max", 8.0), ("center", 4.0), ("top-left", 0.0), ("top-right", 2.0),
     ("bottom-left", 6.0), ("bottom-right", 8.0)],
)
def test_semantic_pooling_options(pooling, expected):
    # conv2 output (before tanh) made equal to the position index 0..8 of a 3x3 map: with an
    # atanh pre-image the pooled value is known for every option of Table 4.
    head = CoefficientSemanticHead(1, 1, num_prototypes=1, num_classes=1, norm="", pooling=pooling)
    vals = torch.arange(9.0).view(1, 1, 3, 3) / 10.0
    head.conv1 = nn.Identity()
    head.conv2 = nn.Identity()
    head.min_size = 3  # the identity 'convs' do not shrink the map
    y = head(torch.atanh(vals))
    assert y.shape == (1, 1, 1)
    assert y.item() == pytest.approx(expected / 10.0, abs=1e-6)


def test_standard_semantic_head_is_a_1x1_conv():
    head = StandardSemanticHead(16, 6)
    assert head(torch.randn(1, 16, 9, 13)).shape == (1, 6, 9, 13)
