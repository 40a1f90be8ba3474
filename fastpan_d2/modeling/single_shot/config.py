"""Config keys of single_shot (defaults are the paper's values)."""
from detectron2.config import CfgNode as CN


def add_single_shot_config(cfg):
    pass
