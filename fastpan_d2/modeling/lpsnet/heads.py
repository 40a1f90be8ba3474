"""LPSNet's two learned heads.

* ``LPSNetBoxHead`` (Sec. 3.2): one 4-layer conv tower shared over P3-P7, then per location
  4 box distances [l, t, r, b] (FCOS: ``relu(scale_l · conv) · stride``, a learned scale per
  level) and 1 border-ness logit. No class branch and no anchors.
* ``LPSNetSemSegHead`` (Sec. 3.3): each of P2-P5 through a deformable-convolution subnetwork
  (``common/deform_conv.py``: torchvision's kernel on CUDA, grid_sample + matmul on CPU),
  bilinear upsampling to 1/4, concatenation, 1x1 conv to all classes (things and stuff).
"""
import math
from typing import List

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import Conv2d, get_norm
from torch import nn

from ..common.deform_conv import ModulatedDeformConv2d

__all__ = ["LPSNetBoxHead", "LPSNetSemSegHead"]


def _norm(norm, channels):
    """detectron2's ``get_norm``, except that GN keeps >= 2 channels per group: 32 groups from
    64 channels on (all real widths), fewer for the toy widths of tests (a 1x1 P7 needs > 1 value)."""
    if norm == "GN":
        return nn.GroupNorm(math.gcd(32, max(channels // 2, 1)), channels)
    return get_norm(norm, channels)


class Scale(nn.Module):
    def __init__(self, init=1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(init)))

    def forward(self, x):
        return x * self.scale


class LPSNetBoxHead(nn.Module):
    @configurable
    def __init__(self, *, in_channels: int, strides: List[int], num_convs=4, norm="GN", prior_prob=0.01):
        super().__init__()
        self.strides = list(strides)
        layers = []
        for _ in range(num_convs):
            layers += [nn.Conv2d(in_channels, in_channels, 3, padding=1), _norm(norm, in_channels) or nn.Identity(),
                       nn.ReLU()]
        self.tower = nn.Sequential(*layers)
        self.box_pred = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.borderness_pred = nn.Conv2d(in_channels, 1, 3, padding=1)
        self.scales = nn.ModuleList(Scale() for _ in self.strides)
        for m in self.modules():  # RetinaNet init [18]
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.constant_(m.bias, 0)
        nn.init.constant_(self.borderness_pred.bias, -math.log((1 - prior_prob) / prior_prob))

    @classmethod
    def from_config(cls, cfg, input_shape):
        feats = cfg.MODEL.LPSNET.IN_FEATURES
        return {
            "in_channels": input_shape[feats[0]].channels,
            "strides": [input_shape[f].stride for f in feats],
            "num_convs": cfg.MODEL.LPSNET.NUM_CONVS,
            "norm": cfg.MODEL.LPSNET.HEAD_NORM,
            "prior_prob": cfg.MODEL.LPSNET.PRIOR_PROB,
        }

    def forward(self, features):
        """features: list over levels (N, C, H_l, W_l) -> (box (N, 4, H_l, W_l) in pixels,
        borderness logits (N, 1, H_l, W_l)) per level."""
        boxes, borderness = [], []
        for x, scale, stride in zip(features, self.scales, self.strides):
            t = self.tower(x)
            boxes.append(F.relu(scale(self.box_pred(t))) * stride)
            borderness.append(self.borderness_pred(t))
        return boxes, borderness


class LPSNetSemSegHead(nn.Module):
    @configurable
    def __init__(self, *, input_shape, num_classes, conv_dims=128, num_convs=2, shared=True,
                 deformable=True, norm="GN", offset_lr_factor=1.0):
        super().__init__()
        self.in_features = list(input_shape.keys())
        in_ch = [input_shape[f].channels for f in self.in_features]
        self.common_stride = input_shape[self.in_features[0]].stride

        def subnet(c):
            layers = []
            for k in range(num_convs):
                cin = c if k == 0 else conv_dims
                n = _norm(norm, conv_dims)
                if deformable:
                    layers.append(ModulatedDeformConv2d(cin, conv_dims, 3, bias=not norm, norm=n, activation=F.relu))
                else:
                    layers.append(Conv2d(cin, conv_dims, 3, padding=1, bias=not norm, norm=n, activation=F.relu))
            return nn.Sequential(*layers)

        if shared:
            assert len(set(in_ch)) == 1, "a shared subnetwork needs equal input channels"
            self.subnets = nn.ModuleList([subnet(in_ch[0])])
        else:
            self.subnets = nn.ModuleList(subnet(c) for c in in_ch)
        if deformable and offset_lr_factor != 1.0:
            # DCN's beta: the offset convs learn at offset_lr_factor x the LR (read by the trainer's
            # optimizer builder). From scratch the FPN outputs are unnormalised and large, and at the
            # full LR the offsets grow to hundreds of pixels (projects/LPSNet/README.md).
            for m in self.subnets.modules():
                if isinstance(m, ModulatedDeformConv2d):
                    for p in m.offset_conv.parameters():
                        p.lr_factor = float(offset_lr_factor)
        self.predictor = Conv2d(conv_dims * len(self.in_features), num_classes, 1)
        nn.init.normal_(self.predictor.weight, std=0.01)
        nn.init.constant_(self.predictor.bias, 0)

    @classmethod
    def from_config(cls, cfg, input_shape, num_classes):
        feats = cfg.MODEL.LPSNET.SEM_SEG_IN_FEATURES
        return {
            "input_shape": {f: input_shape[f] for f in feats},
            "num_classes": num_classes,
            "conv_dims": cfg.MODEL.LPSNET.SEM_SEG_CONVS_DIM,
            "num_convs": cfg.MODEL.LPSNET.SEM_SEG_NUM_CONVS,
            "shared": cfg.MODEL.LPSNET.SEM_SEG_SHARED,
            "deformable": cfg.MODEL.LPSNET.SEM_SEG_DEFORMABLE,
            "norm": cfg.MODEL.LPSNET.SEM_SEG_NORM,
            "offset_lr_factor": cfg.MODEL.LPSNET.SEM_SEG_OFFSET_LR_FACTOR,
        }

    def forward(self, features):
        """features: dict name -> (N, C, H, W) -> logits (N, num_classes, H_2, W_2) at P2's size."""
        size = features[self.in_features[0]].shape[-2:]
        outs = []
        for i, f in enumerate(self.in_features):
            y = self.subnets[i if len(self.subnets) > 1 else 0](features[f])
            if y.shape[-2:] != size:
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
            outs.append(y)
        return self.predictor(torch.cat(outs, dim=1))
