"""LPSNet: box + semantic prediction merged by a parameter-free panoptic head (META_ARCH "LPSNet")."""
from ..backbone import ppm_fpn  # noqa: F401  (registers build_resnet_ppm_fpn_backbone)
from . import meta_arch  # noqa: F401  (registers LPSNet)
from .meta_arch import LPSNet  # noqa: F401
