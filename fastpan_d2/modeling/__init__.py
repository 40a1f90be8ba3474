"""Importing this registers every network's META_ARCH and heads."""
from . import backbone, common  # noqa: F401
from . import epsnet, fpsnet, lpsnet, single_shot, yoso  # noqa: F401
