"""fastpan_d2: real-time panoptic segmentation networks for detectron2.

Importing the package registers every META_ARCH, head, dataset mapper and dataset.
"""
import warnings

# detectron2 v0.6 scripts helpers with torch.jit at import time and imports pkg_resources:
# both only warn, on every start; keep the console for what matters.
warnings.filterwarnings("ignore", message=".*torch.jit.script.*is deprecated", category=FutureWarning)
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)

from . import data  # noqa: F401  (registers datasets and mappers)
from . import modeling  # noqa: F401  (registers META_ARCHs)
from .config import add_fastpan_config, get_fastpan_cfg  # noqa: F401

__version__ = "0.1.0"
