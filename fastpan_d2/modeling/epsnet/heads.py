"""EPSNet's heads: protohead, instance head, semantic heads (coefficient and standard).

* ``ProtoHead``: Z -> 3 conv blocks -> 2x bilinear up -> 1x1 conv -> k prototypes at 1/4.
* ``InstanceHead``: per level a shared conv block, then three 3x3 convs: 4·A box deltas,
  N_thing·A class logits, k·A mask coefficients (tanh); A = anchors per position.
* ``CoefficientSemanticHead`` (Fig. 4): F7 -> conv block (no padding) -> conv (no padding) to
  k·(N_stuff+1) with tanh -> pooling over positions -> Y (k x (N_stuff+1)); logits = P · Y.
* ``StandardSemanticHead`` (Table 3): a 1x1 conv on the fused map (F3's size) -> N_stuff+1.
"""
import math
from typing import List

import torch
from detectron2.layers import Conv2d
from torch import nn
from torch.nn import functional as F

from .fusion import conv_block

SEM_POOLINGS = ("avg", "max", "center", "top-left", "top-right", "bottom-left", "bottom-right")


class ProtoHead(nn.Module):
    def __init__(self, in_channels: int, channels: int, num_prototypes: int, num_convs: int = 3,
                 norm: str = "GN", activation: str = "relu"):
        super().__init__()
        self.convs = nn.Sequential(
            *[conv_block(in_channels if i == 0 else channels, channels, norm) for i in range(num_convs)]
        )
        self.out = nn.Conv2d(channels, num_prototypes, 1)
        if activation not in ("relu", "none"):
            raise ValueError(f"PROTO_ACTIVATION must be 'relu' or 'none', got {activation!r}")
        self.activation = activation

    def forward(self, z):
        x = self.convs(z)
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        p = self.out(x)
        return F.relu(p) if self.activation == "relu" else p


class InstanceHead(nn.Module):
    def __init__(self, in_channels: int, channels: int, num_anchors: int, num_classes: int,
                 num_prototypes: int, norm: str = "GN", prior_prob: float = 0.01):
        super().__init__()
        self.tower = conv_block(in_channels, channels, norm)
        self.bbox = nn.Conv2d(channels, num_anchors * 4, 3, padding=1)
        self.cls = nn.Conv2d(channels, num_anchors * num_classes, 3, padding=1)
        self.coef = nn.Conv2d(channels, num_anchors * num_prototypes, 3, padding=1)
        for m in (self.bbox, self.cls):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)
        # Coefficients start O(1) (xavier, as YOLACT): with near-zero coefficients the prototypes get
        # no gradient from the mask loss and vice versa, and training sits on that saddle for long.
        nn.init.xavier_uniform_(self.coef.weight)
        nn.init.zeros_(self.coef.bias)
        nn.init.constant_(self.cls.bias, -math.log((1 - prior_prob) / prior_prob))
        self.num_classes = num_classes
        self.num_prototypes = num_prototypes

    def forward(self, features: List[torch.Tensor]):
        """-> (cls (N, ΣHWA, C), deltas (N, ΣHWA, 4), coefs (N, ΣHWA, k)), anchor order of
        detectron2's anchor generator (level, y, x, anchor)."""
        cls, box, coef = [], [], []
        for f in features:
            t = self.tower(f)
            cls.append(_to_nhwak(self.cls(t), self.num_classes))
            box.append(_to_nhwak(self.bbox(t), 4))
            coef.append(_to_nhwak(self.coef(t), self.num_prototypes))
        return torch.cat(cls, 1), torch.cat(box, 1), torch.tanh(torch.cat(coef, 1))


def _to_nhwak(x, k):
    n, _, h, w = x.shape
    return x.view(n, -1, k, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, k)


class CoefficientSemanticHead(nn.Module):
    """Y (N, k, N_stuff+1) from F7; ``logits(protos, Y)`` = P · Y as (N, N_stuff+1, Hp, Wp)."""

    def __init__(self, in_channels: int, channels: int, num_prototypes: int, num_classes: int,
                 norm: str = "GN", pooling: str = "avg"):
        super().__init__()
        if pooling not in SEM_POOLINGS:
            raise ValueError(f"SEM_POOLING must be one of {SEM_POOLINGS}, got {pooling!r}")
        self.conv1 = conv_block(in_channels, channels, norm, padding=0)
        self.conv2 = Conv2d(channels, num_prototypes * num_classes, 3, padding=0)
        nn.init.xavier_uniform_(self.conv2.weight)  # O(1) coefficients, see InstanceHead
        nn.init.zeros_(self.conv2.bias)
        self.num_prototypes = num_prototypes
        self.num_classes = num_classes
        self.pooling = pooling
        # Two unpadded 3x3 convs need at least 5x5 positions; smaller maps (small inputs) are
        # zero-padded up to that.
        self.min_size = 5

    def forward(self, f7):
        h, w = f7.shape[-2:]
        if h < self.min_size or w < self.min_size:
            ph, pw = max(self.min_size - h, 0), max(self.min_size - w, 0)
            f7 = F.pad(f7, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        y = torch.tanh(self.conv2(self.conv1(f7)))  # (N, k*C, h', w')
        if self.pooling == "avg":
            y = y.mean(dim=(2, 3))
        elif self.pooling == "max":
            y = y.amax(dim=(2, 3))
        else:
            hh, ww = y.shape[-2:]
            r = {"center": hh // 2, "top-left": 0, "top-right": 0, "bottom-left": hh - 1, "bottom-right": hh - 1}
            c = {"center": ww // 2, "top-left": 0, "top-right": ww - 1, "bottom-left": 0, "bottom-right": ww - 1}
            y = y[:, :, r[self.pooling], c[self.pooling]]
        return y.view(-1, self.num_classes, self.num_prototypes).transpose(1, 2)  # (N, k, C)

    @staticmethod
    def logits(protos, coefs):
        """protos (N, k, H, W), coefs (N, k, C) -> (N, C, H, W) = P · Y per image."""
        return torch.einsum("nkhw,nkc->nchw", protos, coefs)


class StandardSemanticHead(nn.Module):
    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.predictor = nn.Conv2d(in_channels, num_classes, 1)
        nn.init.normal_(self.predictor.weight, std=0.01)
        nn.init.zeros_(self.predictor.bias)

    def forward(self, z):
        return self.predictor(z)
