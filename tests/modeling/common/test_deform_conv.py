"""fastpan_d2.modeling.common.deform_conv: equal to torchvision's deform_conv2d, forward and backward."""
import pytest
import torch
from torchvision.ops import deform_conv2d

import fastpan_d2.modeling.common.deform_conv as dc
from fastpan_d2.modeling.common.deform_conv import ModulatedDeformConv2d, modulated_deform_conv2d

CPU_IMPLS = ("gather", "grid_sample")

GEOMETRIES = [  # H, W, k, stride, pad, dil, groups, offset groups
    (9, 13, 3, 1, 1, 1, 1, 1),  # non-square, sides not multiples of anything
    (10, 7, 3, 2, 1, 1, 1, 1),  # stride 2
    (11, 12, 3, 1, 2, 2, 1, 1),  # dilation 2
    (8, 9, 3, (2, 1), (1, 0), (1, 2), 1, 1),  # anisotropic stride / padding / dilation
    (7, 10, 1, 1, 0, 1, 1, 1),  # 1x1 kernel
    (9, 8, 3, 1, 1, 1, 2, 2),  # conv groups and offset groups
    (6, 11, 3, 1, 1, 1, 1, 2),  # offset groups only
    (5, 6, 3, 1, 1, 1, 2, 1),  # conv groups only
]


def _out(n, k, s, p, d):
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def _case(H, W, k, stride, pad, dil, groups, ogroups, dtype=torch.float64, integer_rows=0):
    """Random inputs; offsets large enough that many taps fall outside the image and between
    pixels; the first ``integer_rows`` output rows get integer offsets (bilinear's kinks, and
    points exactly one pixel outside the image)."""
    g = torch.Generator().manual_seed(H * 100 + W)
    B, C, O = 2, 4, 6
    s, p, d = [(v, v) if isinstance(v, int) else v for v in (stride, pad, dil)]
    Ho, Wo = _out(H, k, s[0], p[0], d[0]), _out(W, k, s[1], p[1], d[1])
    x = torch.randn(B, C, H, W, generator=g, dtype=dtype)
    offset = 3 * torch.randn(B, 2 * ogroups * k * k, Ho, Wo, generator=g, dtype=dtype)
    offset[:, :, :integer_rows] = offset[:, :, :integer_rows].round()
    mask = torch.rand(B, ogroups * k * k, Ho, Wo, generator=g, dtype=dtype)
    weight = torch.randn(O, C // groups, k, k, generator=g, dtype=dtype)
    bias = torch.randn(O, generator=g, dtype=dtype)
    return (x, offset, mask, weight, bias), (s, p, d)


def _run(impl, tensors, geometry, with_mask=True, with_bias=True):
    """Output and the gradients of a fixed, position-dependent loss w.r.t. every input."""
    ts = [t.detach().clone().requires_grad_() for t in tensors]
    x, offset, mask, weight, bias = ts
    y = modulated_deform_conv2d(
        x, offset, mask if with_mask else None, weight, bias if with_bias else None, *geometry, impl=impl
    )
    (y.float() * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
    return y, [t.grad for t in ts]


@pytest.mark.parametrize("impl", CPU_IMPLS)
@pytest.mark.parametrize("H,W,k,stride,pad,dil,groups,ogroups", GEOMETRIES)
def test_forward_matches_torchvision(impl, H, W, k, stride, pad, dil, groups, ogroups):
    (x, offset, mask, weight, bias), (s, p, d) = _case(H, W, k, stride, pad, dil, groups, ogroups)
    ref = deform_conv2d(x, offset, weight, bias, stride=s, padding=p, dilation=d, mask=mask)
    out = modulated_deform_conv2d(x, offset, mask, weight, bias, s, p, d, impl=impl)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, atol=1e-9, rtol=1e-9)
    # inference path (no autograd) gives the same
    with torch.no_grad():
        out_ng = modulated_deform_conv2d(x, offset, mask, weight, bias, s, p, d, impl=impl)
    torch.testing.assert_close(out_ng, ref, atol=1e-9, rtol=1e-9)
    # float32, as used in the networks: ~1e-5
    out32 = modulated_deform_conv2d(
        x.float(), offset.float(), mask.float(), weight.float(), bias.float(), s, p, d, impl=impl
    )
    torch.testing.assert_close(out32, ref.float(), atol=1e-4, rtol=1e-4)
    # no mask == mask of ones
    ref1 = deform_conv2d(x, offset, weight, None, stride=s, padding=p, dilation=d)
    out1 = modulated_deform_conv2d(x, offset, None, weight, None, s, p, d, impl=impl)
    torch.testing.assert_close(out1, ref1, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("H,W,k,stride,pad,dil,groups,ogroups", GEOMETRIES)
def test_gather_gradients_match_torchvision(H, W, k, stride, pad, dil, groups, ogroups):
    """Gradients w.r.t. input, offsets, mask, weight and bias, float64; the first two output rows
    have integer offsets, where both must take the same one-sided derivative."""
    tensors, geometry = _case(H, W, k, stride, pad, dil, groups, ogroups, integer_rows=2)
    y_ref, g_ref = _run("torchvision", tensors, geometry)
    y, g = _run("gather", tensors, geometry)
    torch.testing.assert_close(y, y_ref, atol=1e-9, rtol=1e-9)
    for name, a, b in zip(("input", "offset", "mask", "weight", "bias"), g, g_ref):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-9, msg=lambda m: f"d/d{name}: {m}")
    # without mask and bias: gradients of the rest still match
    _, g_ref = _run("torchvision", tensors, geometry, with_mask=False, with_bias=False)
    _, g = _run("gather", tensors, geometry, with_mask=False, with_bias=False)
    assert g[2] is None and g[4] is None
    for a, b in zip(g[:2] + g[3:4], g_ref[:2] + g_ref[3:4]):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-9)


def test_grid_sample_gradients_match_torchvision():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, 7, 9, generator=g, dtype=torch.float64)
    offset = 2 * torch.randn(1, 18, 7, 9, generator=g, dtype=torch.float64)
    mask = torch.rand(1, 9, 7, 9, generator=g, dtype=torch.float64)
    weight = torch.randn(5, 3, 3, 3, generator=g, dtype=torch.float64)
    bias = torch.randn(5, generator=g, dtype=torch.float64)
    _, g_ref = _run("torchvision", (x, offset, mask, weight, bias), ((1, 1), (1, 1), (1, 1)))
    _, g_gs = _run("grid_sample", (x, offset, mask, weight, bias), ((1, 1), (1, 1), (1, 1)))
    for a, b in zip(g_gs, g_ref):
        torch.testing.assert_close(a, b, atol=1e-7, rtol=1e-6)


def test_gather_tiles_cover_every_position(monkeypatch):
    """More output positions than a tile holds (and not a multiple of it): same as one tile."""
    tensors, geometry = _case(13, 17, 3, 1, 1, 1, 1, 1, dtype=torch.float64)
    y_ref, g_ref = _run("torchvision", tensors, geometry)
    monkeypatch.setattr(dc, "TILE", 37)  # 2 * 13 * 17 = 442 positions = 11 tiles + 35
    y, g = _run("gather", tensors, geometry)
    torch.testing.assert_close(y, y_ref, atol=1e-9, rtol=1e-9)
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-9)


def _rel_err(a, b):
    return float((a.float() - b.float()).abs().max() / b.float().abs().max().clamp(min=1e-12))


def test_gather_under_cpu_autocast_is_bfloat16_and_close_to_float32():
    """Under CPU autocast the gather path computes in bfloat16 (the dtype a conv gets) and stays
    within bfloat16 rounding of torchvision's float32 result, forward and backward; gradients
    come back in the inputs' float32."""
    tensors, geometry = _case(12, 15, 3, 1, 1, 1, 1, 1, dtype=torch.float32)
    y_ref, g_ref = _run("torchvision", tensors, geometry)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, g = _run("gather", tensors, geometry)
    assert y.dtype == torch.bfloat16
    assert all(t.dtype == torch.float32 for t in g)
    assert _rel_err(y, y_ref) < 2e-2
    for name, a, b in zip(("input", "offset", "mask", "weight", "bias"), g, g_ref):
        assert _rel_err(a, b) < 3e-2, name
    # and it is not float32 in disguise: float32 agrees ~1000x better
    y32, _ = _run("gather", tensors, geometry)
    assert _rel_err(y32, y_ref) < 1e-5 < _rel_err(y, y_ref)
    # the grid_sample path (tiny maps, export) also returns bfloat16, bias included
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y_gs, _ = _run("grid_sample", tensors, geometry)
    assert y_gs.dtype == torch.bfloat16 and _rel_err(y_gs, y_ref) < 2e-2


def test_integer_offsets_shift_exactly():
    """A known answer: offset (dy, dx) = (0, +1) on a 1x1 kernel reads the right neighbour."""
    x = torch.arange(12.0).view(1, 1, 3, 4)
    offset = torch.zeros(1, 2, 3, 4)
    offset[:, 1] = 1.0
    mask = torch.ones(1, 1, 3, 4)
    w = torch.ones(1, 1, 1, 1)
    expected = torch.tensor([[1.0, 2, 3, 0], [5, 6, 7, 0], [9, 10, 11, 0]])
    for impl in CPU_IMPLS:
        out = modulated_deform_conv2d(x, offset, mask, w, impl=impl)
        torch.testing.assert_close(out[0, 0], expected)
    # half-pixel shift: mean of the two neighbours; half the mask halves the output
    offset[:, 1] = 0.5
    for impl in CPU_IMPLS:
        out = modulated_deform_conv2d(x, offset, 0.5 * mask, w, impl=impl)
        torch.testing.assert_close(out[0, 0, 0], 0.5 * torch.tensor([0.5, 1.5, 2.5, 1.5]))


def test_module_initialisation_and_implementations_agree():
    torch.manual_seed(0)
    m = ModulatedDeformConv2d(4, 5, 3, stride=2)
    x = torch.randn(2, 4, 11, 14)
    # zero offsets and mask 0.5 at init: half a plain conv's response
    plain = torch.nn.functional.conv2d(x, m.weight, None, stride=2, padding=1)
    y = m(x)
    torch.testing.assert_close(y, 0.5 * plain + m.bias.view(1, -1, 1, 1), atol=1e-5, rtol=1e-5)
    # perturb the offset predictor and compare the implementations
    torch.nn.init.normal_(m.offset_conv.weight, std=0.3)
    m.impl = "torchvision"
    ref = m(x)
    for impl in CPU_IMPLS:
        m.impl = impl
        out = m(x)
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)
        # gradients reach the weights and the offset predictor
        m.zero_grad()
        out.sum().backward()
        assert m.weight.grad.abs().sum() > 0 and m.offset_conv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("impl", CPU_IMPLS)
def test_channels_last_module(impl):
    """A model converted to channels-last (weights and input): same output and gradients as the
    contiguous one; the gather path keeps the channels-last layout for the next layer."""
    torch.manual_seed(1)
    m = ModulatedDeformConv2d(6, 4, 3, offset_groups=2, impl=impl)
    torch.nn.init.normal_(m.offset_conv.weight, std=0.2)
    x = torch.randn(2, 6, 9, 10)
    ref = m(x)
    ref.sum().backward()
    ref_grads = [p.grad.clone() for p in m.parameters()]
    m.zero_grad()
    m_cl = m.to(memory_format=torch.channels_last)
    assert not m_cl.weight.is_contiguous()
    x_cl = x.to(memory_format=torch.channels_last)
    out = m_cl(x_cl)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    if impl == "gather":
        assert out.is_contiguous(memory_format=torch.channels_last)
    out.sum().backward()
    for a, b in zip((p.grad for p in m_cl.parameters()), ref_grads):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_external_offsets():
    m = ModulatedDeformConv2d(3, 2, 3, external_offsets=True)
    assert not hasattr(m, "offset_conv")
    x = torch.randn(1, 3, 6, 5)
    off = torch.randn(1, 18, 6, 5)
    mask = torch.rand(1, 9, 6, 5)
    ref = deform_conv2d(x, off, m.weight, m.bias, padding=1, mask=mask)
    torch.testing.assert_close(m(x, off, mask), ref, atol=1e-5, rtol=1e-5)


def test_auto_picks_by_size_on_cpu_and_grid_sample_while_tracing(monkeypatch):
    calls = []
    for name in ("_gather_deform_conv2d", "_grid_sample_deform_conv2d"):
        real = getattr(dc, name)
        monkeypatch.setattr(dc, name, lambda *a, _n=name, _f=real: calls.append(_n) or _f(*a))
    monkeypatch.setattr(dc, "GATHER_MIN_WORK", 90)
    m = ModulatedDeformConv2d(3, 2, 3).eval()
    small, x = torch.randn(1, 3, 5, 5), torch.randn(1, 3, 6, 5)  # 25 and 30 output positions x 3 channels
    with torch.no_grad():
        m(small)
        eager = m(x)
        traced = torch.jit.trace(m, x, check_trace=False)
    assert calls == ["_grid_sample_deform_conv2d", "_gather_deform_conv2d", "_grid_sample_deform_conv2d"]
    torch.testing.assert_close(traced(x), eager, atol=1e-5, rtol=1e-5)


def test_bad_offsets_and_impl_are_clear_errors():
    x, w = torch.randn(1, 4, 6, 6), torch.randn(2, 4, 3, 3)
    with pytest.raises(ValueError, match="offset has 17 channels"):
        modulated_deform_conv2d(x, torch.zeros(1, 17, 6, 6), None, w, padding=1, impl="gather")
    with pytest.raises(ValueError, match=r"offset is \(5, 6\), the output \(6, 6\)"):
        modulated_deform_conv2d(x, torch.zeros(1, 18, 5, 6), None, w, padding=1, impl="gather")
    with pytest.raises(ValueError, match="Unknown deformable conv implementation 'fast'"):
        ModulatedDeformConv2d(4, 2, impl="fast")
