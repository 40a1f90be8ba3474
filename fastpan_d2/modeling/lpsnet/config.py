"""Config keys of lpsnet (defaults are the paper's values)."""
from detectron2.config import CfgNode as CN


def add_lpsnet_config(cfg):
    pass
