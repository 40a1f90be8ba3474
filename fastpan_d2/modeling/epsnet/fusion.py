"""Fusion of F3-F5 into the protohead's input.

* ``CrossAttentionBlock`` A(T, O) (paper Eq. 2-4, Fig. 6): θ, φ, h are 1x1 convs to
  ``embed_channels`` (128), s_ij = θ(T_i)ᵀ φ(O_j), α = softmax over the source positions j,
  A_i = v(Σ_j α_ij h(O_j)) with v a 1x1 conv back to the input channels (it has to be, for the
  residual sum of Eq. 5).
* ``CLAFusion`` (Eq. 5, Fig. 5): Z = Σ_sources A(F3, source) + F3 with one shared block.
* ``PanopticFPNFusion`` (Table 1/5 baseline): F5, F4, F3 through 3, 2, 1 conv blocks with 2x
  bilinear upsampling between the blocks, summed.
"""
from typing import Dict, List

import torch
from detectron2.layers import Conv2d, get_norm
from torch import nn
from torch.nn import functional as F


def conv_block(in_channels, out_channels, norm, kernel_size=3, padding=1):
    """3x3 conv + norm + ReLU: the paper's 'convolutional block'."""
    conv = Conv2d(
        in_channels,
        out_channels,
        kernel_size,
        padding=padding,
        bias=not norm,
        norm=get_norm(norm, out_channels),
        activation=F.relu,
    )
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


class CrossAttentionBlock(nn.Module):
    def __init__(self, channels: int, embed_channels: int = 128, scale: float = 1.0):
        super().__init__()
        self.theta = nn.Conv2d(channels, embed_channels, 1)
        self.phi = nn.Conv2d(channels, embed_channels, 1)
        self.h = nn.Conv2d(channels, embed_channels, 1)
        self.v = nn.Conv2d(embed_channels, channels, 1)
        self.scale = scale
        for m in (self.theta, self.phi, self.h, self.v):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)

    def forward(self, target, source):
        n, _, ht, wt = target.shape
        q = self.theta(target).flatten(2).transpose(1, 2)  # (N, HW_t, E)
        k = self.phi(source).flatten(2).transpose(1, 2)  # (N, HW_s, E)
        val = self.h(source).flatten(2).transpose(1, 2)  # (N, HW_s, E)
        # softmax(s_ij) over j, Σ_j α_ij h(O_j): one fused attention kernel (CPU and CUDA).
        out = F.scaled_dot_product_attention(q, k, val, scale=self.scale)
        out = out.transpose(1, 2).reshape(n, -1, ht, wt)
        return self.v(out)


class CLAFusion(nn.Module):
    def __init__(self, channels: int, sources: List[str], target: str = "p3", embed_channels: int = 128,
                 shared: bool = True, scale: float = 1.0):
        super().__init__()
        self.target = target
        self.sources = list(sources)
        n_blocks = 1 if shared else len(self.sources)
        self.blocks = nn.ModuleList(
            [CrossAttentionBlock(channels, embed_channels, scale) for _ in range(n_blocks)]
        )

    def forward(self, features: Dict[str, torch.Tensor]):
        t = features[self.target]
        z = t
        for i, name in enumerate(self.sources):
            block = self.blocks[i % len(self.blocks)]
            z = z + block(t, features[name])
        return z


class PanopticFPNFusion(nn.Module):
    """Level i of ``in_features`` (i = 0 the target) gets i + 1 conv blocks, 2x up between."""

    def __init__(self, channels: int, in_features: List[str], norm: str = "GN"):
        super().__init__()
        self.in_features = list(in_features)
        self.branches = nn.ModuleList()
        for i in range(len(self.in_features)):
            self.branches.append(nn.ModuleList([conv_block(channels, channels, norm) for _ in range(i + 1)]))

    def forward(self, features: Dict[str, torch.Tensor]):
        out_size = features[self.in_features[0]].shape[-2:]
        z = None
        for name, blocks in zip(self.in_features, self.branches):
            x = features[name]
            for j, block in enumerate(blocks):
                x = block(x)
                if j < len(blocks) - 1:  # 2x up; the last one lands exactly on F3's size
                    size = out_size if j == len(blocks) - 2 else [2 * s for s in x.shape[-2:]]
                    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            z = x if z is None else z + x
        return z


def build_fusion(cfg, channels):
    e = cfg.MODEL.EPSNET
    if e.FUSION == "CLA":
        return CLAFusion(channels, e.CLA_SOURCES, e.FUSION_IN_FEATURES[0], e.CLA_EMBED_CHANNELS,
                         e.CLA_SHARED, e.CLA_SCALE)
    if e.FUSION == "PanopticFPN":
        return PanopticFPNFusion(channels, e.FUSION_IN_FEATURES, e.NORM)
    raise ValueError(f"MODEL.EPSNET.FUSION must be 'CLA' or 'PanopticFPN', got {e.FUSION!r}")
