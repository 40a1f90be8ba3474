"""YOSO (You Only Segment Once): feature pyramid aggregator + separable dynamic decoder."""
from . import meta_arch  # noqa: F401  (registers META_ARCH "YOSO")
from .meta_arch import YOSO  # noqa: F401
