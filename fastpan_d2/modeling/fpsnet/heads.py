"""FPSNet's two convolutional parts besides the detector.

* ``SingleFeatureMap`` (Sec. III-B2, Fig. 3): S = S3 + S4 + S5 at the stride of the first level;
  a level ``k`` octaves coarser goes through ``k`` steps of (3x3 conv + ReLU, 2x bilinear
  upsampling), the finest level through one 3x3 conv + ReLU.
* ``PanopticHead`` (Sec. III-A2, Fig. 5): 3x3 conv+BN+ReLU merging [S, attention masks], four
  more 3x3 conv+BN+ReLU, then a 1x1 conv to N_att + N_stuff + 2 outputs (the last two are the
  training-only "unmatched thing pixel" and "unlabeled pixel" outputs).

  Optional, not in the paper (``mask_skip`` > 0): the attention masks, divided by C_att, times one
  learnable gain (initialised to ``mask_skip``) are added to their own slot logits. The paper's
  head must learn, separately for each of the N_att slots, that output n follows input mask n;
  with shuffled slots each slot channel gets 1/N_att of the thing supervision, which a head
  trained from scratch for a short schedule never gathers (see projects/FPSNet/README.md). The
  shared gain is trained by every slot, so the head starts out following the masks.
"""
import math
from typing import List

import fvcore.nn.weight_init as weight_init
import torch
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from torch import Tensor, nn
from torch.nn import functional as F


class SingleFeatureMap(nn.Module):
    def __init__(self, input_shapes: List[ShapeSpec], out_channels: int = 128):
        """
        Args:
            input_shapes: the levels, finest first (P3, P4, P5), with channels and strides.
            out_channels: F_dim, the depth of S.
        """
        super().__init__()
        base = input_shapes[0].stride
        self.branches = nn.ModuleList()
        for shape in input_shapes:
            steps = int(round(math.log2(shape.stride / base)))
            convs = []
            for i in range(max(steps, 1)):
                conv = Conv2d(
                    shape.channels if i == 0 else out_channels,
                    out_channels,
                    kernel_size=3,
                    padding=1,
                    activation=F.relu,
                )
                weight_init.c2_msra_fill(conv)
                convs.append(conv)
            self.branches.append(nn.ModuleList(convs))
        self.num_ups = [int(round(math.log2(s.stride / base))) for s in input_shapes]

    def forward(self, features: List[Tensor]) -> Tensor:
        out = None
        for level, (convs, num_up) in enumerate(zip(self.branches, self.num_ups)):
            x = features[level]
            for i, conv in enumerate(convs):
                x = conv(x)
                if num_up > 0:
                    # 2x upsampling, to the exact size of the next finer level (odd sizes).
                    size = features[level - i - 1].shape[-2:]
                    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            out = x if out is None else out + x
        return out


class PanopticHead(nn.Module):
    def __init__(
        self,
        in_channels: int,
        num_masks: int,
        num_stuff: int,
        conv_dim: int = 128,
        num_convs: int = 4,
        norm: str = "BN",
        mask_skip: float = 0.0,
        attention_scale: float = 50.0,
    ):
        """
        Args:
            in_channels: F_dim (the attention masks are added to it here).
            num_masks: N_att. num_stuff: N_stuff.
            conv_dim: width of the head. num_convs: 3x3 layers after the merging layer.
            norm: normalisation of the 3x3 layers (the paper: batch norm).
            mask_skip: initial gain of the mask-to-slot-logit skip (0 = none, the paper).
            attention_scale: C_att, what the masks given to ``forward`` are scaled by.
        """
        super().__init__()
        self.num_masks, self.num_stuff = num_masks, num_stuff
        self.attention_scale = attention_scale
        self.mask_gain = nn.Parameter(torch.tensor(float(mask_skip))) if mask_skip > 0 else None
        layers = []
        for i in range(num_convs + 1):
            conv = Conv2d(
                in_channels + num_masks if i == 0 else conv_dim,
                conv_dim,
                kernel_size=3,
                padding=1,
                bias=not norm,
                norm=get_norm(norm, conv_dim),
                activation=F.relu,
            )
            weight_init.c2_msra_fill(conv)
            layers.append(conv)
        self.layers = nn.Sequential(*layers)
        self.predictor = nn.Conv2d(conv_dim, num_masks + num_stuff + 2, kernel_size=1)
        nn.init.normal_(self.predictor.weight, std=0.01)
        nn.init.constant_(self.predictor.bias, 0)

    def forward(self, features: Tensor, masks: Tensor) -> Tensor:
        """features (B, F_dim, H, W), masks (B, N_att, H, W) already scaled by C_att
        -> logits (B, N_att + N_stuff + 2, H, W)."""
        masks = masks.to(features.dtype)
        logits = self.predictor(self.layers(torch.cat([features, masks], dim=1)))
        if self.mask_gain is None:
            return logits
        skip = self.mask_gain * masks / self.attention_scale
        return torch.cat([logits[:, : self.num_masks] + skip, logits[:, self.num_masks :]], dim=1)

