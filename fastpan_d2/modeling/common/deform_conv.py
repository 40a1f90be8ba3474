"""Modulated deformable convolution (DCNv2) that runs fast on CPU and on CUDA.

``modulated_deform_conv2d(x, offset, mask, weight, ...)`` has the signature and the
output of ``torchvision.ops.deform_conv2d(..., mask=mask)``; offsets use torchvision's
layout: ``offset[:, 2 * (g * K + k)]`` is the y (row) shift and ``offset[:, 2 * (g * K + k) + 1]``
the x (column) shift of kernel tap ``k = i * kw + j`` in offset group ``g``; ``mask`` is
``(B, offset_groups * K, Ho, Wo)``.

* On CUDA (or when ``impl="torchvision"``) it calls torchvision's kernel.
* On CPU it samples the ``K = kh * kw`` shifted positions of every output location with one
  ``F.grid_sample`` (bilinear, zeros outside the image: the same rule torchvision applies),
  multiplies by the modulation mask, and does a single matmul with the flattened weights.
  That is ~2x faster than torchvision's CPU kernel and equal to it up to float rounding.

``ModulatedDeformConv2d`` is the module: by default it predicts its own offsets and mask
with a plain conv of the same kernel/stride/padding/dilation, initialised to zero, so a new
layer starts with zero offsets and mask sigmoid(0) = 0.5 everywhere, as in DCNv2. With
``external_offsets=True`` it has no such conv and ``forward(x, offset, mask)`` takes them
as inputs (mask already in [0, 1]).
"""
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair
from torchvision.ops import deform_conv2d as tv_deform_conv2d

__all__ = ["modulated_deform_conv2d", "ModulatedDeformConv2d"]


def _out_size(size, k, stride, pad, dil):
    return (size + 2 * pad - dil * (k - 1) - 1) // stride + 1


def _grid_sample_deform_conv2d(x, offset, mask, weight, bias, stride, padding, dilation):
    B, C, H, W = x.shape
    O, Cg, kh, kw = weight.shape
    K = kh * kw
    groups = C // Cg
    Ho = _out_size(H, kh, stride[0], padding[0], dilation[0])
    Wo = _out_size(W, kw, stride[1], padding[1], dilation[1])
    G = offset.shape[1] // (2 * K)  # offset groups
    dtype, device = x.dtype, x.device

    # Regular sampling positions p0 + pk of every (tap, output location): (K, Ho, Wo).
    ys = torch.arange(Ho, device=device, dtype=dtype) * stride[0] - padding[0]
    xs = torch.arange(Wo, device=device, dtype=dtype) * stride[1] - padding[1]
    ky = torch.arange(kh, device=device, dtype=dtype) * dilation[0]
    kx = torch.arange(kw, device=device, dtype=dtype) * dilation[1]
    base_y = (ky[:, None] + torch.zeros_like(kx)[None, :]).reshape(K, 1, 1) + ys.view(1, Ho, 1)
    base_x = (kx[None, :] + torch.zeros_like(ky)[:, None]).reshape(K, 1, 1) + xs.view(1, 1, Wo)

    off = offset.view(B, G, K, 2, Ho, Wo)
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
        m = mask.view(B, G, 1, K, Ho * Wo)
        # In place when no gradient is recorded: saves a copy of the (C, K, Ho*Wo) columns, the
        # largest tensor of the layer (300 MB on P2 at 800x1333 with 128 channels).
        sampled = sampled * m if torch.is_grad_enabled() else sampled.mul_(m)
    cols = sampled.reshape(B, groups, Cg * K, Ho * Wo)
    w = weight.view(groups, O // groups, Cg * K)
    out = torch.matmul(w.unsqueeze(0), cols).reshape(B, O, Ho, Wo)
    if bias is not None:
        out = out + bias.view(1, O, 1, 1)
    return out


def modulated_deform_conv2d(
    x, offset, mask, weight, bias=None, stride=1, padding=0, dilation=1, impl="auto"
):
    """Modulated deformable conv; same arguments/result as torchvision's ``deform_conv2d``.

    impl: "auto" (torchvision on CUDA, grid_sample on CPU), "torchvision" or "grid_sample".
    """
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    if impl == "auto":
        impl = "torchvision" if x.is_cuda else "grid_sample"
    if impl == "torchvision":
        return tv_deform_conv2d(
            x, offset, weight, bias, stride=stride, padding=padding, dilation=dilation, mask=mask
        )
    if impl != "grid_sample":
        raise ValueError(f"Unknown deformable conv implementation {impl!r}")
    return _grid_sample_deform_conv2d(x, offset, mask, weight, bias, stride, padding, dilation)


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
