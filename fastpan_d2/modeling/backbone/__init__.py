"""Backbones shared by the networks (ResNet/FPN variants built on detectron2); importing this
registers them in detectron2's BACKBONE_REGISTRY."""
from . import ppm_fpn, resnet_fpn_p2_p7  # noqa: F401
