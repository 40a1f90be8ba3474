"""FPSNet: attention-mask panoptic head on RetinaNet (META_ARCH "FPSNet")."""
from .config import add_fpsnet_config  # noqa: F401
from .meta_arch import FPSNet  # noqa: F401
