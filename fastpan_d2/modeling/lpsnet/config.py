"""Config keys of LPSNet (defaults are the paper's values, COCO R50 at shorter side 800).

Paper: Hong et al., "LPSNet: A lightweight solution for fast panoptic segmentation", CVPR 2021.
"""
from detectron2.config import CfgNode as CN


def add_ppm_fpn_config(cfg):
    """Keys of the ``build_resnet_ppm_fpn_backbone`` backbone (backbone/ppm_fpn.py)."""
    cfg.MODEL.PPM_FPN = CN()
    # Context module on res5 added before P5 (Table 5 left): "PPM" | "GAP" | "NONE".
    cfg.MODEL.PPM_FPN.CONTEXT = "PPM"
    cfg.MODEL.PPM_FPN.POOL_SCALES = (1, 2, 3, 6)  # PSPNet's bins
    cfg.MODEL.PPM_FPN.PPM_CHANNELS = 512  # channels of each pooled branch (UPerNet)
    cfg.MODEL.PPM_FPN.NORM = ""  # norm of the PPM convs ("" = none, "BN", "GN", ...)
    # P6/P7: two stride-2 3x3 convs on P5 (Sec. 3.1, as FCOS); "res5" would take C5 instead.
    cfg.MODEL.PPM_FPN.TOP_BLOCK_IN = "p5"


def add_lpsnet_config(cfg):
    add_ppm_fpn_config(cfg)
    cfg.MODEL.LPSNET = CN()
    # --- box head (Sec. 3.2) ---
    cfg.MODEL.LPSNET.IN_FEATURES = ["p3", "p4", "p5", "p6", "p7"]
    cfg.MODEL.LPSNET.NUM_CONVS = 4  # "4-layer sub-network"
    cfg.MODEL.LPSNET.HEAD_NORM = "GN"  # as FCOS
    # FCOS regression ranges per level: max(l*, t*, r*, b*) in (lo, hi] goes to that level.
    cfg.MODEL.LPSNET.SIZES_OF_INTEREST = [64, 128, 256, 512]
    # Positive samples (Fig. 3 / Fig. 7b): "mask" = locations on a thing's mask (paper),
    # "box" = every location inside a GT box (FCOS).
    cfg.MODEL.LPSNET.POSITIVE_SAMPLES = "mask"
    # Quality target (Eq. 1 / Fig. 7a): "borderness" (distances to the mask's borders, paper)
    # or "centerness" (FCOS, distances to the box's borders).
    cfg.MODEL.LPSNET.QUALITY_TARGET = "borderness"
    # Border-ness is trained with BCE; with no class branch it also carries the "is this
    # location responsible for an object at this level" signal, so negatives get target 0.
    cfg.MODEL.LPSNET.BORDERNESS_ON_NEGATIVES = True
    cfg.MODEL.LPSNET.BOX_LOSS_TYPE = "giou"  # "iou" | "giou" (FCOS)
    cfg.MODEL.LPSNET.BOX_LOSS_WEIGHT = 1.0
    cfg.MODEL.LPSNET.BORDERNESS_LOSS_WEIGHT = 1.0
    cfg.MODEL.LPSNET.PRIOR_PROB = 0.01  # init of the border-ness bias, as in [18]
    # --- semantic head (Sec. 3.3) ---
    cfg.MODEL.LPSNET.SEM_SEG_IN_FEATURES = ["p2", "p3", "p4", "p5"]
    cfg.MODEL.LPSNET.SEM_SEG_CONVS_DIM = 128
    cfg.MODEL.LPSNET.SEM_SEG_NUM_CONVS = 2  # deformable convs per level
    cfg.MODEL.LPSNET.SEM_SEG_SHARED = True  # one deformable subnetwork for all levels (UPSNet)
    cfg.MODEL.LPSNET.SEM_SEG_DEFORMABLE = True  # False: plain 3x3 convs
    cfg.MODEL.LPSNET.SEM_SEG_NORM = "GN"
    # LR factor of the deformable convs' offset/mask convs (DCN's beta; 1 = the paper, which names
    # none). A per-parameter LR factor in the optimizer (fastpan_d2.engine.trainer).
    cfg.MODEL.LPSNET.SEM_SEG_OFFSET_LR_FACTOR = 1.0
    cfg.MODEL.LPSNET.SEM_SEG_LOSS_WEIGHT = 0.7  # 0.7 COCO, 1.0 Cityscapes
    cfg.MODEL.LPSNET.IGNORE_VALUE = 255
    # --- inference (FCOS post-processing, Sec. 3.5) ---
    cfg.MODEL.LPSNET.SCORE_THRESH_TEST = 0.05
    cfg.MODEL.LPSNET.PRE_NMS_TOPK_TEST = 1000  # per level
    cfg.MODEL.LPSNET.NMS_THRESH_TEST = 0.6
    cfg.MODEL.LPSNET.DETECTIONS_PER_IMAGE = 100
    # --- parameter-free panoptic head (Sec. 3.4) ---
    cfg.MODEL.LPSNET.PANOPTIC = CN()
    cfg.MODEL.LPSNET.PANOPTIC.OVERLAP_THRESH = 0.3  # drop a mask if > 0.3 of it is taken
    # Same-class conflicts (Table 5 right): "borderness" | "area" | "confidence".
    cfg.MODEL.LPSNET.PANOPTIC.OVERLAP_POLICY = "borderness"
    cfg.MODEL.LPSNET.PANOPTIC.MIN_SCORE = 0.0  # boxes below are not pasted (paper: none)
    cfg.MODEL.LPSNET.PANOPTIC.STUFF_AREA_LIMIT = 0  # stuff segments smaller become void (paper: none)
