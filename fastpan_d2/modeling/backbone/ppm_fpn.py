"""ResNet-FPN with a context module on res5 (LPSNet Sec. 3.1) and P6/P7 by stride-2 convs.

LPSNet applies a Pyramid Pooling Module (PSPNet) to res5, reduces its output to the FPN width
(256) and *adds* it to FPN's lateral of res5 before P5 is produced; the top-down pathway
therefore carries the global context down to P2. P6 and P7 come from P5 by two stride-2 3x3
convs (as FCOS). ``CONTEXT`` switches the module (LPSNet Table 5, left):

* ``"PPM"``: adaptive average pooling to each of ``POOL_SCALES`` bins, 1x1 conv (+norm) +
  ReLU per bin, bilinear upsampling back, concat with res5, 3x3 conv (+norm) + ReLU to the
  FPN width;
* ``"GAP"``: global average pooling, 1x1 conv to the FPN width, broadcast (UPSNet's baseline);
* ``"NONE"``: plain FPN.

``MODEL.PPM_FPN.*`` keys are added by the LPSNet config adder (``add_ppm_fpn_config``).
"""
import fvcore.nn.weight_init as weight_init
import torch
import torch.nn.functional as F
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone import FPN, build_resnet_backbone
from detectron2.modeling.backbone.fpn import LastLevelP6P7
from torch import nn

__all__ = ["PyramidPooling", "GlobalContext", "PPMFPN", "build_resnet_ppm_fpn_backbone"]


class PyramidPooling(nn.Module):
    """PSPNet's pyramid pooling, reduced to ``out_channels`` by a 3x3 conv."""

    def __init__(self, in_channels, out_channels, pool_scales=(1, 2, 3, 6), channels=512, norm=""):
        super().__init__()
        self.pool_scales = tuple(int(s) for s in pool_scales)
        use_bias = norm == ""
        self.branches = nn.ModuleList(
            Conv2d(in_channels, channels, 1, bias=use_bias, norm=get_norm(norm, channels), activation=F.relu)
            for _ in self.pool_scales
        )
        self.fuse = Conv2d(
            in_channels + channels * len(self.pool_scales),
            out_channels,
            3,
            padding=1,
            bias=use_bias,
            norm=get_norm(norm, out_channels),
            activation=F.relu,
        )
        for m in list(self.branches) + [self.fuse]:
            weight_init.c2_msra_fill(m)

    def forward(self, x):
        size = x.shape[-2:]
        outs = [x]
        for scale, branch in zip(self.pool_scales, self.branches):
            y = branch(F.adaptive_avg_pool2d(x, scale))
            outs.append(F.interpolate(y, size=size, mode="bilinear", align_corners=False))
        return self.fuse(torch.cat(outs, dim=1))


class GlobalContext(nn.Module):
    """Global average pooling + 1x1 conv, broadcast over the map (UPSNet's baseline)."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv = Conv2d(in_channels, out_channels, 1)
        weight_init.c2_xavier_fill(self.conv)

    def forward(self, x):
        return self.conv(x.mean(dim=(2, 3), keepdim=True)).expand(-1, -1, *x.shape[-2:])


class _LateralPlusContext:
    """Callable standing in for FPN's top lateral conv: lateral(x) + context(x).

    A plain object (not a Module) so the parameters stay registered where they were
    (``fpn_lateral5.*`` and ``context.*``) and detectron2's FPN forward is reused unchanged.
    """

    def __init__(self, lateral, context):
        self.lateral, self.context = lateral, context

    def __call__(self, x):
        return self.lateral(x) + self.context(x)


class PPMFPN(FPN):
    """detectron2's FPN whose top lateral also receives a context module's output."""

    def __init__(self, bottom_up, in_features, out_channels, norm="", top_block=None, fuse_type="sum",
                 context="PPM", pool_scales=(1, 2, 3, 6), ppm_channels=512, ppm_norm=""):
        super().__init__(bottom_up, in_features, out_channels, norm, top_block, fuse_type)
        top_channels = bottom_up.output_shape()[in_features[-1]].channels
        context = context.upper()
        if context == "PPM":
            self.context = PyramidPooling(top_channels, out_channels, pool_scales, ppm_channels, ppm_norm)
        elif context == "GAP":
            self.context = GlobalContext(top_channels, out_channels)
        elif context == "NONE":
            self.context = None
        else:
            raise ValueError(f"Unknown MODEL.PPM_FPN.CONTEXT {context!r}; expected PPM, GAP or NONE")
        if self.context is not None:
            self.lateral_convs[0] = _LateralPlusContext(self.lateral_convs[0], self.context)


@BACKBONE_REGISTRY.register()
def build_resnet_ppm_fpn_backbone(cfg, input_shape: ShapeSpec):
    """ResNet + PPM-FPN, P2-P7 (P6/P7 by stride-2 convs on P5 by default)."""
    bottom_up = build_resnet_backbone(cfg, input_shape)
    out_channels = cfg.MODEL.FPN.OUT_CHANNELS
    top_in = cfg.MODEL.PPM_FPN.TOP_BLOCK_IN
    top_in_channels = out_channels if top_in.startswith("p") else bottom_up.output_shape()[top_in].channels
    return PPMFPN(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=out_channels,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelP6P7(top_in_channels, out_channels, in_feature=top_in),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
        context=cfg.MODEL.PPM_FPN.CONTEXT,
        pool_scales=cfg.MODEL.PPM_FPN.POOL_SCALES,
        ppm_channels=cfg.MODEL.PPM_FPN.PPM_CHANNELS,
        ppm_norm=cfg.MODEL.PPM_FPN.NORM,
    )
