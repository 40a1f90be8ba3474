"""ResNet-FPN with every level P2-P7 (strides 4 to 128), 256 channels each.

detectron2's ``build_retinanet_resnet_fpn_backbone`` gives P3-P7 and ``build_resnet_fpn_backbone``
P2-P6; networks that detect on P2-P7 (Single-Shot Panoptic, Weber et al.) need both ends:
FPN over ``MODEL.FPN.IN_FEATURES`` (res2..res5 -> P2..P5) plus RetinaNet's P6/P7 top block
computed from C5.
"""
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone.fpn import FPN, LastLevelP6P7
from detectron2.modeling.backbone.resnet import build_resnet_backbone


@BACKBONE_REGISTRY.register()
def build_resnet_fpn_p2_p7_backbone(cfg, input_shape: ShapeSpec):
    bottom_up = build_resnet_backbone(cfg, input_shape)
    out_channels = cfg.MODEL.FPN.OUT_CHANNELS
    return FPN(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=out_channels,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelP6P7(bottom_up.output_shape()["res5"].channels, out_channels, "res5"),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )
