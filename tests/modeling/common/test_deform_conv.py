"""fastpan_d2.modeling.common.deform_conv: equal to torchvision's deform_conv2d."""
import pytest
import torch
from torchvision.ops import deform_conv2d

from fastpan_d2.modeling.common.deform_conv import ModulatedDeformConv2d, modulated_deform_conv2d


def _out(n, k, s, p, d):
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


@pytest.mark.parametrize(
    "H,W,k,stride,pad,dil,groups,ogroups",
    [
        (9, 13, 3, 1, 1, 1, 1, 1),  # non-square, sides not multiples of anything
        (10, 7, 3, 2, 1, 1, 1, 1),  # stride 2
        (11, 12, 3, 1, 2, 2, 1, 1),  # dilation 2
        (8, 9, 3, (2, 1), (1, 0), (1, 2), 1, 1),  # anisotropic stride / padding / dilation
        (7, 10, 1, 1, 0, 1, 1, 1),  # 1x1 kernel
        (9, 8, 3, 1, 1, 1, 2, 2),  # conv groups and offset groups
        (6, 11, 3, 1, 1, 1, 1, 2),  # offset groups only
    ],
)
def test_grid_sample_matches_torchvision(H, W, k, stride, pad, dil, groups, ogroups):
    g = torch.Generator().manual_seed(H * 100 + W)
    B, C, O = 2, 4, 6
    s, p, d = [(v, v) if isinstance(v, int) else v for v in (stride, pad, dil)]
    Ho, Wo = _out(H, k, s[0], p[0], d[0]), _out(W, k, s[1], p[1], d[1])
    x = torch.randn(B, C, H, W, generator=g, dtype=torch.float64)
    # offsets large enough that many taps fall outside the image and between pixels
    offset = 3 * torch.randn(B, 2 * ogroups * k * k, Ho, Wo, generator=g, dtype=torch.float64)
    mask = torch.rand(B, ogroups * k * k, Ho, Wo, generator=g, dtype=torch.float64)
    weight = torch.randn(O, C // groups, k, k, generator=g, dtype=torch.float64)
    bias = torch.randn(O, generator=g, dtype=torch.float64)
    ref = deform_conv2d(x, offset, weight, bias, stride=s, padding=p, dilation=d, mask=mask)
    out = modulated_deform_conv2d(x, offset, mask, weight, bias, s, p, d, impl="grid_sample")
    assert out.shape == ref.shape == (B, O, Ho, Wo)
    torch.testing.assert_close(out, ref, atol=1e-9, rtol=1e-9)
    # inference path (no autograd: the mask is applied in place) gives the same
    with torch.no_grad():
        out_ng = modulated_deform_conv2d(x, offset, mask, weight, bias, s, p, d, impl="grid_sample")
    torch.testing.assert_close(out_ng, ref, atol=1e-9, rtol=1e-9)
    # float32, as used in the networks: ~1e-5
    out32 = modulated_deform_conv2d(
        x.float(), offset.float(), mask.float(), weight.float(), bias.float(), s, p, d, impl="grid_sample"
    )
    torch.testing.assert_close(out32, ref.float(), atol=1e-4, rtol=1e-4)
    # no mask == mask of ones
    ref1 = deform_conv2d(x, offset, weight, None, stride=s, padding=p, dilation=d)
    out1 = modulated_deform_conv2d(x, offset, None, weight, None, s, p, d, impl="grid_sample")
    torch.testing.assert_close(out1, ref1, atol=1e-9, rtol=1e-9)


def test_integer_offsets_shift_exactly():
    """A known answer: offset (dy, dx) = (0, +1) on a 1x1 kernel reads the right neighbour."""
    x = torch.arange(12.0).view(1, 1, 3, 4)
    offset = torch.zeros(1, 2, 3, 4)
    offset[:, 1] = 1.0
    mask = torch.ones(1, 1, 3, 4)
    w = torch.ones(1, 1, 1, 1)
    out = modulated_deform_conv2d(x, offset, mask, w, impl="grid_sample")
    expected = torch.tensor([[1.0, 2, 3, 0], [5, 6, 7, 0], [9, 10, 11, 0]])
    torch.testing.assert_close(out[0, 0], expected)
    # half-pixel shift: mean of the two neighbours; half the mask halves the output
    offset[:, 1] = 0.5
    out = modulated_deform_conv2d(x, offset, 0.5 * mask, w, impl="grid_sample")
    torch.testing.assert_close(out[0, 0, 0], 0.5 * torch.tensor([0.5, 1.5, 2.5, 1.5]))


def test_gradients_match_torchvision():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, 7, 9, generator=g, dtype=torch.float64)
    offset = 2 * torch.randn(1, 18, 7, 9, generator=g, dtype=torch.float64)
    mask = torch.rand(1, 9, 7, 9, generator=g, dtype=torch.float64)
    weight = torch.randn(5, 3, 3, 3, generator=g, dtype=torch.float64)
    grads = []
    for impl in ("torchvision", "grid_sample"):
        ts = [t.clone().requires_grad_() for t in (x, offset, mask, weight)]
        y = modulated_deform_conv2d(ts[0], ts[1], ts[2], ts[3], None, 1, 1, 1, impl=impl)
        (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)).sum().backward()
        grads.append([t.grad for t in ts])
    for a, b in zip(*grads):
        # offsets: bilinear sampling is piecewise linear, both differentiate the same pieces
        torch.testing.assert_close(a, b, atol=1e-7, rtol=1e-6)


def test_module_initialisation_and_implementations_agree():
    torch.manual_seed(0)
    m = ModulatedDeformConv2d(4, 5, 3, stride=2)
    x = torch.randn(2, 4, 11, 14)
    # zero offsets and mask 0.5 at init: half a plain conv's response
    plain = torch.nn.functional.conv2d(x, m.weight, None, stride=2, padding=1)
    y = m(x)
    torch.testing.assert_close(y, 0.5 * plain + m.bias.view(1, -1, 1, 1), atol=1e-5, rtol=1e-5)
    # perturb the offset predictor and compare the two implementations
    torch.nn.init.normal_(m.offset_conv.weight, std=0.3)
    m.impl = "torchvision"
    ref = m(x)
    m.impl = "grid_sample"
    out = m(x)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)
    # gradients reach the weights and the offset predictor
    out.sum().backward()
    assert m.weight.grad.abs().sum() > 0 and m.offset_conv.weight.grad.abs().sum() > 0


def test_external_offsets():
    m = ModulatedDeformConv2d(3, 2, 3, external_offsets=True)
    assert not hasattr(m, "offset_conv")
    x = torch.randn(1, 3, 6, 5)
    off = torch.randn(1, 18, 6, 5)
    mask = torch.rand(1, 9, 6, 5)
    ref = deform_conv2d(x, off, m.weight, m.bias, padding=1, mask=mask)
    torch.testing.assert_close(m(x, off, mask), ref, atol=1e-5, rtol=1e-5)
