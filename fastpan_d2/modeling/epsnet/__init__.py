"""EPSNet: prototype-based one-stage panoptic network with cross-layer attention fusion."""
from .meta_arch import EPSNet  # noqa: F401  (registers the META_ARCH)
