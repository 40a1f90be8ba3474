"""Config keys of epsnet (defaults are the paper's values)."""
from detectron2.config import CfgNode as CN


def add_epsnet_config(cfg):
    pass
