"""Config keys of yoso (defaults are the paper's values)."""
from detectron2.config import CfgNode as CN


def add_yoso_config(cfg):
    pass
