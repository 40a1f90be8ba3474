"""Modulated deformable convolution (DCNv2) that runs fast on CPU and on CUDA.

``modulated_deform_conv2d(x, offset, mask, weight, ...)`` has the signature and the
output of ``torchvision.ops.deform_conv2d(..., mask=mask)``; offsets use torchvision's
layout: ``offset[:, 2 * (g * K + k)]`` is the y (row) shift and ``offset[:, 2 * (g * K + k) + 1]``
the x (column) shift of kernel tap ``k = i * kw + j`` in offset group ``g``; ``mask`` is
``(B, offset_groups * K, Ho, Wo)``.

Implementations (``impl``):

* ``"torchvision"``: torchvision's kernel. The default on CUDA.
* ``"gather"``: the default on CPU. Every sampling point p0 + pk + Δpk of DCNv2's Eq. (3) is a
  bilinear blend of four pixels; their integer row indices (in the channels-last image) and
  their weights (bilinear weight × validity × modulation Δmk) are computed once, then output
  positions are processed in tiles of ``TILE`` positions: one ``F.embedding_bag`` gathers the
  weighted rows into the (tile, K·C) columns and one matmul with the (K·C, O) weights gives
  the tile's output. The backward pass is written out (``_GatherDeformConv2d``) and tiled the
  same way: it recomputes a tile's samples instead of keeping the columns, so training holds no
  (B·Ho·Wo, K·C) buffer; the mask and offset gradients are dot products of the column gradient
  with samples taken at the bilinear weights and at their derivatives in y and x, the input
  gradient four per-corner scatters. Out-of-image pixels count as zero, and at integer sampling
  coordinates (where bilinear sampling has a kink) the offset gradient is the one-sided one
  torchvision takes, so the two agree to rounding in every gradient. Under CPU autocast the
  image, weights and bias are cast to the autocast dtype (bfloat16) as a conv's are; sampling
  coordinates are always computed in float32 (float64 for float64 offsets).
* ``"grid_sample"``: the same sampling as one ``F.grid_sample`` over all K taps, then one
  matmul. Slower than ``"gather"`` on feature maps of real images (it materialises the whole
  column matrix) but made of standard ops only, so it is what ``"auto"`` picks while tracing /
  exporting (ONNX), and faster on tiny maps (below ``GATHER_MIN_WORK`` output positions x
  input channels, e.g. the 128-pixel synthetic images' P3-P5), where "auto" takes it too.

``ModulatedDeformConv2d`` is the module: by default it predicts its own offsets and mask
with a plain conv of the same kernel/stride/padding/dilation, initialised to zero, so a new
layer starts with zero offsets and mask sigmoid(0) = 0.5 everywhere, as in DCNv2. With
``external_offsets=True`` it has no such conv and ``forward(x, offset, mask)`` takes them
as inputs (mask already in [0, 1]). It works on channels-last inputs and weights.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn.modules.utils import _pair
from torchvision.ops import deform_conv2d as tv_deform_conv2d

__all__ = ["modulated_deform_conv2d", "ModulatedDeformConv2d", "IMPLEMENTATIONS"]

IMPLEMENTATIONS = ("auto", "gather", "grid_sample", "torchvision")

# Output positions per gather + matmul tile. Measured on YOSO's and LPSNet's layers at 800x1333
# (tools/benchmark_deform_conv.py, 2 threads): float32 is flat from 256 to 2048 except with 1024
# input channels (2048: +15%), bfloat16 gains up to 30% from 512 to 1024-2048; 4096 lost much of
# the gain (DESIGN.md, "Speed facts").
TILE = 1024
# Below this many (output positions x input channels) "auto" takes "grid_sample" on CPU: the
# gather's index bookkeeping (per sampling point) then costs more than it saves (per channel).
# Measured forward + backward: at par at 1024 positions x 64 channels, gather ahead from ~1000
# positions x 128 channels on (LPSNet's P5 at 800x1333: 1.7x).
GATHER_MIN_WORK = 2**17


def _out_size(size, k, stride, pad, dil):
    return (size + 2 * pad - dil * (k - 1) - 1) // stride + 1


def _memory_format(x):
    if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _geometry(x, offset, weight, stride, padding, dilation):
    """Shapes of one call; a clear error for offsets that do not fit the input and the weight."""
    B, C, H, W = x.shape
    O, Cg, kh, kw = weight.shape
    K = kh * kw
    Ho = _out_size(H, kh, stride[0], padding[0], dilation[0])
    Wo = _out_size(W, kw, stride[1], padding[1], dilation[1])
    G = offset.shape[1] // (2 * K)
    if torch.jit.is_tracing():  # shapes are traced values here; checking them only warns
        return B, C, H, W, O, kh, kw, Ho, Wo, G
    if G < 1 or offset.shape[1] != 2 * G * K or C % G or C % Cg:
        raise ValueError(
            f"deformable conv: offset has {offset.shape[1]} channels; expected 2 * offset_groups * {K} "
            f"with offset_groups dividing the {C} input channels (weight {tuple(weight.shape)})"
        )
    if tuple(offset.shape[-2:]) != (Ho, Wo):
        raise ValueError(f"deformable conv: offset is {tuple(offset.shape[-2:])}, the output {(Ho, Wo)}")
    return B, C, H, W, O, kh, kw, Ho, Wo, G


def _sampling_points(offset, mask, kh, kw, Ho, Wo, G, stride, padding, dilation):
    """Sampling coordinates p0 + pk + Δpk (py, px) and modulation Δmk of every
    (b, ho, wo, tap, group), shaped (B, Ho, Wo, K, G): a tile of output positions is then a
    contiguous block. float32 (float64 for float64 offsets), whatever the compute dtype."""
    B, K = offset.shape[0], kh * kw
    ctype = torch.promote_types(offset.dtype, torch.float32)
    off = offset.to(ctype).reshape(B, G, K, 2, Ho, Wo).permute(0, 4, 5, 2, 1, 3).contiguous()
    dev = offset.device
    tap = torch.arange(K, device=dev)
    ky = (tap // kw).to(ctype) * dilation[0]
    kx = (tap % kw).to(ctype) * dilation[1]
    oy = torch.arange(Ho, device=dev, dtype=ctype) * stride[0] - padding[0]
    ox = torch.arange(Wo, device=dev, dtype=ctype) * stride[1] - padding[1]
    py = off[..., 0] + (oy[:, None] + ky[None, :]).view(1, Ho, 1, K, 1)
    px = off[..., 1] + (ox[:, None] + kx[None, :]).view(1, 1, Wo, K, 1)
    m = None
    if mask is not None:
        m = mask.to(ctype).reshape(B, G, K, Ho, Wo).permute(0, 3, 4, 2, 1).contiguous()
    return py, px, m


def _bilinear_corners(py, px, H, W, G):
    """The four bilinear corners (y0, x0), (y0, x1), (y1, x0), (y1, x1) of every sampling point.

    Returns row indices (N, 4) into the (B*H*W*G, C/G) channels-last image (a corner outside the
    image gets some valid row), whether each corner is inside the image (N, 4), the bilinear
    weights (N, 4) (0 outside the image) and the fractional parts ly, lx (N,)."""
    B = py.shape[0]
    y0f, x0f = py.floor(), px.floor()
    ly, lx = (py - y0f).reshape(-1), (px - x0f).reshape(-1)
    y0, x0 = y0f.long(), x0f.long()
    in_y0, in_y1 = (y0 >= 0) & (y0 < H), (y0 >= -1) & (y0 < H - 1)
    in_x0, in_x1 = (x0 >= 0) & (x0 < W), (x0 >= -1) & (x0 < W - 1)
    inside = torch.stack((in_y0 & in_x0, in_y0 & in_x1, in_y1 & in_x0, in_y1 & in_x1), dim=-1).reshape(-1, 4)
    hy, hx = 1 - ly, 1 - lx
    weights = torch.stack((hy * hx, hy * lx, ly * hx, ly * lx), dim=-1) * inside
    image_row = torch.arange(B, device=py.device).view(B, 1, 1, 1, 1) * H
    row0 = (image_row + y0.clamp(0, H - 1)) * W
    row1 = (image_row + (y0 + 1).clamp(0, H - 1)) * W
    col0, col1 = x0.clamp(0, W - 1), (x0 + 1).clamp(0, W - 1)
    group = torch.arange(G, device=py.device)[:, None]
    index = torch.stack((row0 + col0, row0 + col1, row1 + col0, row1 + col1), dim=-1) * G + group
    return index.reshape(-1, 4), inside, weights, ly, lx


def _weight_matrix(weight, groups):
    """(O, C/groups, kh, kw) -> (groups, K*C/groups, O/groups), rows ordered (tap, channel) as
    the gathered columns are."""
    O = weight.shape[0]
    return weight.permute(0, 2, 3, 1).reshape(groups, O // groups, -1).transpose(1, 2)


def _columns_by_group(cols, K, groups):
    """(T, K*C) columns ordered (tap, channel) -> (groups, T, K*C/groups); a view when groups == 1."""
    T = cols.shape[0]
    return cols.view(T, K, groups, -1).permute(2, 0, 1, 3).reshape(groups, T, -1)


class _GatherDeformConv2d(torch.autograd.Function):
    """The "gather" implementation (module docstring); inputs in their compute dtypes."""

    @staticmethod
    def forward(ctx, x, offset, mask, weight, bias, stride, padding, dilation, groups):
        B, C, H, W, O, kh, kw, Ho, Wo, G = _geometry(x, offset, weight, stride, padding, dilation)
        K, P = kh * kw, B * Ho * Wo
        rows = x.permute(0, 2, 3, 1).contiguous().view(B * H * W * G, C // G)
        py, px, m = _sampling_points(offset, mask, kh, kw, Ho, Wo, G, stride, padding, dilation)
        index, _, weights, _, _ = _bilinear_corners(py, px, H, W, G)
        if m is not None:
            weights = weights * m.reshape(-1, 1)
        weights = weights.to(x.dtype)
        wmat = _weight_matrix(weight, groups)
        out = x.new_empty((P, O))
        n = K * G  # sampling points per output position
        for p0 in range(0, P, TILE):
            p1 = min(P, p0 + TILE)
            cols = F.embedding_bag(index[p0 * n : p1 * n], rows, per_sample_weights=weights[p0 * n : p1 * n], mode="sum")
            cols = cols.view(p1 - p0, K * C)
            if groups == 1:
                if bias is None:
                    torch.mm(cols, wmat[0], out=out[p0:p1])
                else:
                    torch.addmm(bias, cols, wmat[0], out=out[p0:p1])
            else:
                res = torch.bmm(_columns_by_group(cols, K, groups), wmat).permute(1, 0, 2).reshape(p1 - p0, O)
                out[p0:p1] = res if bias is None else res + bias
        ctx.save_for_backward(x, offset, mask, weight)
        ctx.conf = (stride, padding, dilation, groups, bias is not None)
        return out.view(B, Ho, Wo, O).permute(0, 3, 1, 2).contiguous(memory_format=_memory_format(x))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, offset, mask, weight = ctx.saved_tensors
        stride, padding, dilation, groups, has_bias = ctx.conf
        B, C, H, W, O, kh, kw, Ho, Wo, G = _geometry(x, offset, weight, stride, padding, dilation)
        K, P, Cg = kh * kw, B * Ho * Wo, C // G
        acc = torch.promote_types(x.dtype, torch.float32)  # accumulators of the scattered sums
        rows = x.permute(0, 2, 3, 1).contiguous().view(B * H * W * G, Cg)
        py, px, m = _sampling_points(offset, mask, kh, kw, Ho, Wo, G, stride, padding, dilation)
        index, inside, bilinear, ly, lx = _bilinear_corners(py, px, H, W, G)
        m = m.reshape(-1) if m is not None else None
        weights = (bilinear * m[:, None] if m is not None else bilinear).to(x.dtype)
        wmat = _weight_matrix(weight, groups)
        go = grad_out.permute(0, 2, 3, 1).reshape(P, O).to(x.dtype)
        need_x, need_off, need_mask, need_w = ctx.needs_input_grad[:4]
        grad_rows = torch.zeros(rows.shape, dtype=acc, device=x.device) if need_x else None
        grad_wmat = torch.zeros(wmat.shape, dtype=acc, device=x.device) if need_w else None
        # The mask and offset gradients are dot products of the upstream column gradient with the
        # point's sample taken with other weights: the bilinear ones (the unmodulated sample, for
        # the mask) and their derivatives in py and px (for the offsets). One embedding_bag of
        # 3 x the points computes the three samples of a tile.
        need_dots = need_off or (need_mask and m is not None)
        if need_dots:
            hy, hx = 1 - ly, 1 - lx
            d_py = torch.stack((-hx, -lx, hx, lx), dim=-1) * inside
            d_px = torch.stack((-hy, hy, -ly, ly), dim=-1) * inside
            probes = torch.stack((bilinear, d_py, d_px)).to(x.dtype)  # (3, N, 4)
            dots = torch.empty(probes.shape[:2], dtype=acc, device=x.device)
        n = K * G
        for p0 in range(0, P, TILE):
            p1 = min(P, p0 + TILE)
            s0, s1 = p0 * n, p1 * n
            index_t = index[s0:s1]
            go_t = go[p0:p1].view(p1 - p0, groups, O // groups).transpose(0, 1)  # (groups, T, O/groups)
            samples = None
            if need_dots:
                samples = F.embedding_bag(
                    index_t.repeat(3, 1), rows, per_sample_weights=probes[:, s0:s1].reshape(-1, 4), mode="sum"
                ).view(3, s1 - s0, Cg)
            if need_w:
                if samples is None:
                    cols = F.embedding_bag(index_t, rows, per_sample_weights=weights[s0:s1], mode="sum")
                else:  # the forward's columns: the unmodulated sample times the mask
                    cols = samples[0] if m is None else samples[0] * m[s0:s1, None].to(x.dtype)
                grad_wmat += torch.bmm(_columns_by_group(cols.view(p1 - p0, K * C), K, groups).transpose(1, 2), go_t)
            gcols = torch.bmm(go_t, wmat.transpose(1, 2))  # (groups, T, K*C/groups)
            gcols = gcols.view(groups, p1 - p0, K, -1).permute(1, 2, 0, 3).reshape(s1 - s0, Cg)
            if need_x:
                # the transposed gather: corner by corner (4 scatters of (points, C/G) beat one of 4x that)
                gcols_acc, w_acc = gcols.to(acc), weights[s0:s1].to(acc)
                for c, corner_rows in enumerate(index_t.t().contiguous()):
                    grad_rows.index_add_(0, corner_rows, gcols_acc * w_acc[:, c : c + 1])
            if need_dots:
                dots[:, s0:s1] = torch.einsum("knc,nc->kn", samples, gcols)
        grad_x = grad_offset = grad_mask = grad_weight = grad_bias = None
        if need_x:
            grad_x = grad_rows.view(B, H, W, C).permute(0, 3, 1, 2).to(x.dtype)
            grad_x = grad_x.contiguous(memory_format=_memory_format(x))
        if need_mask and m is not None:
            grad_mask = dots[0].view(B, Ho, Wo, K, G).permute(0, 4, 3, 1, 2).reshape(mask.shape).to(mask.dtype)
        if need_off:
            grad = dots[1:] if m is None else dots[1:] * m
            grad = grad.view(2, B, Ho, Wo, K, G).permute(1, 5, 4, 0, 2, 3).reshape(offset.shape)
            grad_offset = grad.to(offset.dtype)
        if need_w:
            grad_weight = grad_wmat.transpose(1, 2).reshape(O, kh, kw, C // groups).permute(0, 3, 1, 2)
            grad_weight = grad_weight.to(weight.dtype).contiguous(memory_format=_memory_format(weight))
        if has_bias and ctx.needs_input_grad[4]:
            grad_bias = go.to(acc).sum(0).to(weight.dtype)
        return grad_x, grad_offset, grad_mask, grad_weight, grad_bias, None, None, None, None


def _gather_deform_conv2d(x, offset, mask, weight, bias, stride, padding, dilation):
    groups = x.shape[1] // weight.shape[1]
    if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        # what autocast does to a conv: image, weight and bias in the autocast dtype
        dtype = torch.get_autocast_dtype("cpu")
        x, weight = x.to(dtype), weight.to(dtype)
        bias = bias.to(dtype) if bias is not None else None
        with torch.autocast("cpu", enabled=False):
            return _GatherDeformConv2d.apply(x, offset, mask, weight, bias, stride, padding, dilation, groups)
    if weight.dtype != x.dtype or (bias is not None and bias.dtype != x.dtype):
        raise TypeError(f"deformable conv: input is {x.dtype}, weight {weight.dtype}"
                        + (f", bias {bias.dtype}" if bias is not None else ""))
    return _GatherDeformConv2d.apply(x, offset, mask, weight, bias, stride, padding, dilation, groups)


def _grid_sample_deform_conv2d(x, offset, mask, weight, bias, stride, padding, dilation):
    B, C, H, W, O, kh, kw, Ho, Wo, G = _geometry(x, offset, weight, stride, padding, dilation)
    K = kh * kw
    groups = C // weight.shape[1]
    dtype, device = x.dtype, x.device

    # Regular sampling positions p0 + pk of every (tap, output location): (K, Ho, Wo).
    ys = torch.arange(Ho, device=device, dtype=dtype) * stride[0] - padding[0]
    xs = torch.arange(Wo, device=device, dtype=dtype) * stride[1] - padding[1]
    ky = torch.arange(kh, device=device, dtype=dtype) * dilation[0]
    kx = torch.arange(kw, device=device, dtype=dtype) * dilation[1]
    base_y = (ky[:, None] + torch.zeros_like(kx)[None, :]).reshape(K, 1, 1) + ys.view(1, Ho, 1)
    base_x = (kx[None, :] + torch.zeros_like(ky)[:, None]).reshape(K, 1, 1) + xs.view(1, 1, Wo)

    off = offset.reshape(B, G, K, 2, Ho, Wo)
    py = base_y + off[:, :, :, 0]  # (B, G, K, Ho, Wo)
    px = base_x + off[:, :, :, 1]
    # Normalise for align_corners=False: pixel index i sits at (2i + 1) / size - 1.
    grid = torch.stack(((2 * px + 1) / W - 1, (2 * py + 1) / H - 1), dim=-1)
    grid = grid.view(B * G, K * Ho, Wo, 2)
    sampled = F.grid_sample(
        x.reshape(B * G, C // G, H, W), grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )  # (B*G, C/G, K*Ho, Wo)
    sampled = sampled.view(B, G, C // G, K, Ho * Wo)
    if mask is not None:
        m = mask.reshape(B, G, 1, K, Ho * Wo)
        # In place when no gradient is recorded: saves a copy of the (C, K, Ho*Wo) columns, the
        # largest tensor of the layer (300 MB on P2 at 800x1333 with 128 channels).
        sampled = sampled * m if torch.is_grad_enabled() else sampled.mul_(m)
    cols = sampled.reshape(B, groups, C // groups * K, Ho * Wo)
    w = weight.reshape(groups, O // groups, C // groups * K)
    out = torch.matmul(w.unsqueeze(0), cols).reshape(B, O, Ho, Wo)
    if bias is not None:
        out = out + bias.view(1, O, 1, 1).to(out.dtype)  # under autocast, out is bfloat16 like a conv's
    return out


def modulated_deform_conv2d(
    x, offset, mask, weight, bias=None, stride=1, padding=0, dilation=1, impl="auto"
):
    """Modulated deformable conv; same arguments/result as torchvision's ``deform_conv2d``.

    impl: "auto" (torchvision on CUDA; on CPU "gather", or "grid_sample" below
    ``GATHER_MIN_WORK`` output positions x input channels and while tracing or exporting),
    "gather", "grid_sample" or "torchvision"; see the module docstring.
    """
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    if impl == "auto":
        if x.is_cuda:
            impl = "torchvision"
        elif torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            impl = "grid_sample"
        elif offset.shape[0] * offset.shape[2] * offset.shape[3] * x.shape[1] < GATHER_MIN_WORK:
            impl = "grid_sample"
        else:
            impl = "gather"
    if impl == "torchvision":
        return tv_deform_conv2d(
            x, offset, weight, bias, stride=stride, padding=padding, dilation=dilation, mask=mask
        )
    if impl == "gather":
        return _gather_deform_conv2d(x, offset, mask, weight, bias, stride, padding, dilation)
    if impl == "grid_sample":
        return _grid_sample_deform_conv2d(x, offset, mask, weight, bias, stride, padding, dilation)
    raise ValueError(f"Unknown deformable conv implementation {impl!r}; expected one of {IMPLEMENTATIONS}")


class ModulatedDeformConv2d(nn.Module):
    """DCNv2 layer; see the module docstring.

    Args:
        external_offsets: False (default) = predict offsets + mask with an own zero-initialised
            conv (``offset_conv``, 3 * offset_groups * K channels: 2*G*K offsets in torchvision's
            layout, then G*K mask logits). True = ``forward(x, offset, mask)``.
        impl: see ``modulated_deform_conv2d``.
        norm/activation: optional modules applied after the conv (detectron2 Conv2d style).
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size=3,
        stride=1,
        padding=None,
        dilation=1,
        groups=1,
        offset_groups=1,
        bias=True,
        external_offsets=False,
        impl="auto",
        norm=None,
        activation=None,
    ):
        super().__init__()
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.dilation = _pair(dilation)
        if padding is None:  # "same" padding for odd kernels
            padding = tuple(d * (k - 1) // 2 for k, d in zip(self.kernel_size, self.dilation))
        self.padding = _pair(padding)
        assert in_channels % groups == 0 and out_channels % groups == 0
        assert in_channels % offset_groups == 0
        if impl not in IMPLEMENTATIONS:
            raise ValueError(f"Unknown deformable conv implementation {impl!r}; expected one of {IMPLEMENTATIONS}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.groups, self.offset_groups = groups, offset_groups
        self.impl = impl
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *self.kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        K = self.kernel_size[0] * self.kernel_size[1]
        self.external_offsets = external_offsets
        if not external_offsets:
            self.offset_conv = nn.Conv2d(
                in_channels,
                3 * offset_groups * K,
                self.kernel_size,
                stride=self.stride,
                padding=self.padding,
                dilation=self.dilation,
            )
            nn.init.zeros_(self.offset_conv.weight)
            nn.init.zeros_(self.offset_conv.bias)
        self.norm = norm
        self.activation = activation

    def forward(self, x, offset=None, mask=None):
        if not self.external_offsets:
            assert offset is None and mask is None, "this layer predicts its own offsets"
            out = self.offset_conv(x)
            n_off = 2 * self.offset_groups * self.kernel_size[0] * self.kernel_size[1]
            offset, mask = out[:, :n_off], out[:, n_off:].sigmoid()
        y = modulated_deform_conv2d(
            x, offset, mask, self.weight, self.bias, self.stride, self.padding, self.dilation, self.impl
        )
        if self.norm is not None:
            y = self.norm(y)
        if self.activation is not None:
            y = self.activation(y)
        return y

    def extra_repr(self):
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
            f"groups={self.groups}, offset_groups={self.offset_groups}, "
            f"external_offsets={self.external_offsets}, impl={self.impl!r}"
        )
