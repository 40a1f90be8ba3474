"""Tiny YOSO configs and inputs for the tests (few channels, small images)."""
import torch
from detectron2.structures import BitMasks, Instances

from fastpan_d2 import get_fastpan_cfg

CONFIG = "configs/Synthetic-PanopticSegmentation/yoso.yaml"


def tiny_cfg(repo_root, *opts):
    cfg = get_fastpan_cfg()
    cfg.merge_from_file(f"{repo_root}/{CONFIG}")
    cfg.merge_from_list(
        [
            "MODEL.YOSO.HIDDEN_DIM", 16,
            "MODEL.YOSO.NUM_PROPOSALS", 10,
            "MODEL.YOSO.DIM_FEEDFORWARD", 32,
            "MODEL.YOSO.NUM_HEADS", 2,
            "MODEL.YOSO.TRAIN_NUM_POINTS", 256,
            "MODEL.YOSO.AGGREGATOR.COMPRESS_CHANNELS", [8, 8, 16, 16],
            # the paper's structure (the synthetic config turns these on; tests opt in)
            "MODEL.YOSO.SHARE_HEADS", False,
            "MODEL.YOSO.AUX_SEMANTIC_WEIGHT", 0.0,
        ]
        + list(opts)
    )
    return cfg


def make_input(h, w, segments, seed=0):
    """segments: list of (category_id, (y0, y1, x0, x1)) painted in order (later ones on top)."""
    g = torch.Generator().manual_seed(seed)
    pan = torch.zeros(h, w, dtype=torch.long)
    sem = torch.full((h, w), 255, dtype=torch.long)  # as PanopticDatasetMapper: contiguous ids, 255 void
    for i, (c, (y0, y1, x0, x1)) in enumerate(segments):
        pan[y0:y1, x0:x1] = i + 1
        sem[y0:y1, x0:x1] = c
    info = [{"id": i + 1, "category_id": c, "iscrowd": 0} for i, (c, _) in enumerate(segments)]
    inst = Instances((h, w))
    inst.gt_masks = BitMasks(torch.zeros(0, h, w, dtype=torch.bool))
    return {
        "image": torch.randint(0, 255, (3, h, w), generator=g, dtype=torch.uint8),
        "pan_seg": pan,
        "sem_seg": sem,
        "segments_info": info,
        "instances": inst,
        "height": h,
        "width": w,
    }
