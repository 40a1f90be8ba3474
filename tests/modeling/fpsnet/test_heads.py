"""Shapes of FPSNet's heads at two input sizes (one non-square, sides not multiples of 32)."""
import math

import pytest
import torch
from detectron2.layers import ShapeSpec

from fastpan_d2.modeling.fpsnet.heads import PanopticHead, SingleFeatureMap


@pytest.mark.parametrize("size", [(64, 64), (72, 100)])
def test_single_feature_map_is_at_stride_8(size):
    h, w = size
    shapes = [ShapeSpec(channels=12, stride=s) for s in (8, 16, 32)]
    fm = SingleFeatureMap(shapes, out_channels=10)
    # FPN-like level sizes without padding: ceil at every stride-2 step.
    feats = [torch.randn(2, 12, math.ceil(h / s), math.ceil(w / s)) for s in (8, 16, 32)]
    out = fm(feats)
    assert out.shape == (2, 10, math.ceil(h / 8), math.ceil(w / 8))
    # S5 has two conv+upsample steps, S4 one, S3 one conv (no upsampling).
    assert [len(b) for b in fm.branches] == [1, 1, 2]


def test_single_feature_map_is_the_sum_of_its_branches():
    shapes = [ShapeSpec(channels=4, stride=s) for s in (8, 16, 32)]
    fm = SingleFeatureMap(shapes, out_channels=3)
    feats = [torch.randn(1, 4, 8, 8), torch.zeros(1, 4, 4, 4), torch.zeros(1, 4, 2, 2)]
    for branch in fm.branches[1:]:
        for conv in branch:
            torch.nn.init.zeros_(conv.bias)
    # Zero coarse inputs (and zero biases) contribute nothing: S = relu(conv(P3)).
    assert torch.allclose(fm(feats), fm.branches[0][0](feats[0]))


@pytest.mark.parametrize("size", [(8, 8), (9, 13)])
def test_panoptic_head_outputs(size):
    head = PanopticHead(in_channels=10, num_masks=7, num_stuff=4, conv_dim=8, num_convs=4)
    head.eval()
    out = head(torch.randn(2, 10, *size), torch.rand(2, 7, *size) * 50)
    assert out.shape == (2, 7 + 4 + 2, *size)  # N_att + N_stuff + 2 training-only outputs
    assert len(head.layers) == 5  # merging conv + four more
    assert all(isinstance(l.norm, torch.nn.BatchNorm2d) for l in head.layers)


def test_mask_logit_skip_adds_the_masks_over_c_att_to_their_own_slots():
    torch.manual_seed(0)
    plain = PanopticHead(in_channels=10, num_masks=7, num_stuff=4, conv_dim=8, num_convs=1)
    assert plain.mask_gain is None  # off by default (the paper)
    skip = PanopticHead(in_channels=10, num_masks=7, num_stuff=4, conv_dim=8, num_convs=1,
                        mask_skip=3.0, attention_scale=50.0)
    skip.load_state_dict(plain.state_dict(), strict=False)
    plain.eval(), skip.eval()
    feats, masks = torch.randn(2, 10, 6, 5), torch.zeros(2, 7, 6, 5)
    masks[1, 4, 2, 3] = 50.0  # peak of slot 4's mask, one pixel
    diff = skip(feats, masks) - plain(feats, masks)
    expected = torch.zeros_like(diff)
    expected[1, 4, 2, 3] = 3.0  # gain * mask / C_att, on slot 4 only; stuff and extras untouched
    assert torch.allclose(diff, expected, atol=1e-5)
    # The gain is one parameter shared by the slots, and it learns.
    skip(feats, masks)[1, 4, 2, 3].backward()
    assert skip.mask_gain.grad.item() == pytest.approx(1.0)
