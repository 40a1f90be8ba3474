"""Helpers of the FPSNet tests: a tiny config and hand-built input dicts."""
import os

import torch
from detectron2.structures import BitMasks, Instances

from fastpan_d2.config import get_fastpan_cfg

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
# Synthetic dataset's classes: things contiguous 0..4, stuff 5..8.
NUM_THINGS = 5


def tiny_cfg(**fpsnet):
    """FPSNet on a ResNet-18-FPN with every width cut down, for fast tests."""
    cfg = get_fastpan_cfg()
    cfg.merge_from_file(os.path.join(REPO, "configs/Synthetic-PanopticSegmentation/fpsnet.yaml"))
    cfg.MODEL.FPN.OUT_CHANNELS = 16
    cfg.MODEL.RETINANET.NUM_CONVS = 1
    cfg.MODEL.FPSNET.FEATURE_DIM = 16
    cfg.MODEL.FPSNET.HEAD_DIM = 16
    cfg.MODEL.FPSNET.NUM_HEAD_CONVS = 1
    cfg.MODEL.FPSNET.NUM_ATTENTION_MASKS = 6
    for k, v in fpsnet.items():
        setattr(cfg.MODEL.FPSNET, k, v)
    return cfg


def make_input(h, w, things=((4, 4, 20, 24, 0), (30, 10, 44, 40, 3)), stuff=5, height=None, width=None):
    """An image dict as PanopticDatasetMapper gives it: rectangles of things on one stuff class,
    the first row unlabeled (255)."""
    inst = Instances((h, w))
    masks = torch.zeros(len(things), h, w, dtype=torch.bool)
    sem = torch.full((h, w), stuff if stuff is not None else 255, dtype=torch.long)
    for i, (y0, x0, y1, x1, c) in enumerate(things):
        masks[i, y0:y1, x0:x1] = True
        sem[y0:y1, x0:x1] = c
    sem[0] = 255
    inst.gt_masks = BitMasks(masks)
    inst.gt_boxes = inst.gt_masks.get_bounding_boxes()
    inst.gt_classes = torch.tensor([t[4] for t in things], dtype=torch.long)
    g = torch.Generator().manual_seed(h * 1000 + w)
    d = {"image": torch.randint(0, 255, (3, h, w), dtype=torch.uint8, generator=g), "instances": inst, "sem_seg": sem}
    if height is not None:
        d["height"], d["width"] = height, width
    return d

