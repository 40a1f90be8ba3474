"""fastpan_d2: real-time panoptic segmentation networks for detectron2.

Importing the package registers every META_ARCH, head, dataset mapper and dataset.
"""
from . import data  # noqa: F401  (registers datasets and mappers)
from . import modeling  # noqa: F401  (registers META_ARCHs)
from .config import add_fastpan_config, get_fastpan_cfg  # noqa: F401

__version__ = "0.1.0"
