"""Single-Shot Panoptic Segmentation (Weber et al.): META_ARCH ``SingleShotPanoptic``."""
from .meta_arch import SingleShotPanoptic  # noqa: F401  (registers the META_ARCH)
from .panoptic_head import SingleShotPanopticHead  # noqa: F401
