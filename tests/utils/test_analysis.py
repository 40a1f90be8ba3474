"""fastpan_d2.utils.analysis: multiply-adds of hand-built modules with known counts."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import deform_conv2d

from fastpan_d2.modeling.common.deform_conv import ModulatedDeformConv2d, modulated_deform_conv2d
from fastpan_d2.utils.analysis import MultiplyAddCounter, count_flops, flop_count_operators


def _count(fn):
    with torch.no_grad(), MultiplyAddCounter() as c:
        fn()
    return c


def test_conv_and_linear():
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2)
    x = torch.randn(2, 4, 9, 10)  # output 5 x 5
    assert count_flops(conv, (x,)) == 2 * 6 * 5 * 5 * (4 // 2) * 9
    lin = nn.Linear(8, 3)
    assert count_flops(lin, (torch.randn(2, 5, 8),)) == 2 * 5 * 8 * 3
    # einsum / bmm / matmul count their products
    a, b = torch.randn(3, 4, 5), torch.randn(3, 5, 7)
    assert _count(lambda: torch.einsum("bij,bjk->bik", a, b)).total() == 3 * 4 * 5 * 7
    assert _count(lambda: torch.bmm(a, b)).total() == 3 * 4 * 5 * 7
    assert _count(lambda: a[0] @ b[0]).total() == 4 * 5 * 7


@pytest.mark.parametrize("transposed", [False, True])
def test_scaled_dot_product_attention(transposed):
    """Q·Kᵀ and A·V: 2·B·h·Lq·Lk·d, whichever kernel runs (contiguous or transposed inputs)."""
    B, h, Lq, Lk, d = 2, 3, 5, 7, 8
    q, k, v = torch.randn(B, h, Lq, d), torch.randn(B, h, Lk, d), torch.randn(B, h, Lk, d)
    if transposed:
        q, k, v = (t.transpose(1, 2).contiguous().transpose(1, 2) for t in (q, k, v))
    assert _count(lambda: F.scaled_dot_product_attention(q, k, v)).total() == 2 * B * h * Lq * Lk * d
    # the math reference gives the same count through its bmms
    def math():
        a = (q @ k.transpose(-1, -2) / d**0.5).softmax(-1)
        return a @ v

    assert _count(math).total() == 2 * B * h * Lq * Lk * d


def test_multihead_attention_fused_and_unfused_paths_count_alike():
    """nn.MultiheadAttention's fused inference kernel (self-attention, eval, no grad) and its
    unfused path (cross-attention) count the same: projections + the two products."""
    B, L, E, heads = 2, 6, 16, 4
    mha = nn.MultiheadAttention(E, heads, batch_first=True).eval()
    x = torch.randn(B, L, E)
    expected = 4 * B * L * E * E + 2 * B * L * L * E
    fused = _count(lambda: mha(x, x, x, need_weights=False))
    assert "_native_multi_head_attention" in fused.by_operator()
    assert fused.total() == expected
    unfused = _count(lambda: mha(x, x.clone(), x.clone(), need_weights=False))
    assert "_native_multi_head_attention" not in unfused.by_operator()
    assert unfused.total() == expected


def test_deformable_conv_counts_as_the_dense_conv():
    B, C, O, H, W = 2, 4, 6, 7, 9
    x, w = torch.randn(B, C, H, W), torch.randn(O, C, 3, 3)
    offset, mask = torch.randn(B, 18, H, W), torch.rand(B, 9, H, W)
    dense = B * O * H * W * C * 9
    assert _count(lambda: deform_conv2d(x, offset, w, padding=1, mask=mask)).total() == dense
    for impl in ("gather", "grid_sample"):
        c = _count(lambda: modulated_deform_conv2d(x, offset, mask, w, None, 1, 1, 1, impl=impl))
        sampling = 4 * B * C * 9 * H * W if impl == "grid_sample" else 0  # grid_sample: 4 per output
        assert c.total() == dense + sampling, impl
    # the module: its offset conv (3 * 9 outputs) plus the deformable conv
    m = ModulatedDeformConv2d(C, O, 3, bias=False, impl="gather")
    assert count_flops(m, (x,)) == dense + B * 27 * H * W * C * 9


def test_matches_detectron2_fvcore_conventions():
    """On a traceable module fvcore counts, both counters agree exactly (norms, upsampling, grid
    sampling, adaptive pooling included)."""
    from detectron2.utils.analysis import FlopCountAnalysis

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.bn = nn.BatchNorm2d(8)
            self.gn = nn.GroupNorm(2, 8)
            self.ln = nn.LayerNorm(8)
            self.fc = nn.Linear(8, 5)

        def forward(self, x):
            y = self.gn(self.bn(self.conv(x)))
            y = F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)
            y = F.interpolate(y, scale_factor=2, mode="nearest")
            y = F.grid_sample(y, torch.zeros(1, 4, 4, 2), align_corners=False)
            y = F.adaptive_avg_pool2d(y, 2)
            return self.fc(self.ln(y.flatten(2).transpose(1, 2)))

    net = Net().eval()
    x = torch.randn(1, 3, 6, 5)
    fca = FlopCountAnalysis(net, (x,))
    fca.unsupported_ops_warnings(False)
    ours = count_flops(net, (x,))
    assert ours == fca.total() > 0
    assert flop_count_operators(net, (x,))["convolution"] == pytest.approx(8 * 3 * 9 * 30 / 1e9)


def test_by_module_and_model_mode():
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Sequential(nn.Conv2d(2, 3, 1), nn.Conv2d(3, 4, 1))
            self.b = nn.Linear(4, 2)

        def forward(self, x):
            y = self.a(x)
            return self.b(y.mean((2, 3))), torch.einsum("bchw,dc->bdhw", y, torch.ones(2, 4))

    net = Two().train()
    x = torch.randn(1, 2, 3, 3)
    total, by_module = count_flops(net, (x,), by_module_depth=1)
    conv = 9 * (2 * 3 + 3 * 4)
    assert by_module == {"": total, "a": conv, "b": 4 * 2}
    assert total == conv + 8 + 9 * 4 * 2  # the einsum is the model's own
    _, deep = count_flops(net, (x,), by_module_depth=2)
    assert deep["a.0"] == 9 * 6 and deep["a.1"] == 9 * 12
    flop_count_operators(net, (x,))
    assert net.training  # restored


def test_by_module_credits_a_head_called_through_a_method():
    """A meta-arch that calls ``self.head.layers(x)`` (not ``forward``) still credits ``head``."""

    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 3, 1)

        def layers(self, x):
            return self.conv(x)

    class Arch(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = Head()

        def forward(self, x):
            return self.head.layers(x).sum(1) @ torch.ones(4, 5)

    x = torch.randn(1, 2, 4, 4)
    total, by_module = count_flops(Arch(), (x,), by_module_depth=1)
    assert by_module == {"": total, "head": 16 * 2 * 3}
    assert total == 16 * 2 * 3 + 4 * 4 * 5  # the matmul is the meta-arch's own
