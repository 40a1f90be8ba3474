"""Config keys of fpsnet (defaults are the paper's values)."""
from detectron2.config import CfgNode as CN


def add_fpsnet_config(cfg):
    pass
