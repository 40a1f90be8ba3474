"""Config keys of FPSNet (defaults are the paper's values, de Geus et al., RA-L 2020)."""
from detectron2.config import CfgNode as CN


def add_fpsnet_config(cfg):
    cfg.MODEL.FPSNET = CN()
    _C = cfg.MODEL.FPSNET
    # --- single feature map (Sec. III-B2, Fig. 3): S = S3 + S4 + S5 at stride 8 ---
    _C.IN_FEATURES = ["p3", "p4", "p5"]  # FPN levels merged into S (lowest stride first)
    _C.FEATURE_DIM = 128  # F_dim, depth of S
    # --- attention masks (Sec. III-A1) ---
    _C.NUM_ATTENTION_MASKS = 50  # N_att (ablation: 25 / 50 / 100)
    _C.ATTENTION_SCALE = 50.0  # C_att (ablation: 1 / 10 / 50 / 100)
    _C.HARD_MASKS = False  # ablation: constant C_att inside the box instead of the Gaussian
    # The paper's spread S = diag(w/4, h/4) is the Gaussian's covariance, with w, h the box size in
    # feature-map pixels ("variance"); "std" reads it as standard deviations (w/4, h/4) instead.
    _C.GAUSSIAN_SPREAD = "variance"
    _C.SHUFFLE_MASKS = True  # ablation: False keeps the masks in score order during training
    # --- matching detections to ground-truth things in training (Sec. III-A3) ---
    _C.MATCH_IOU_THRESH = 0.5  # box IoU must be greater than this
    _C.MATCH_SAME_CLASS = False  # not in the paper: also require the detection's class to be right
    # Ablation of Table III ("GT boxes as attention masks"): build the masks from the ground-truth
    # boxes instead of the detections (training, and evaluation when "instances" are given).
    _C.GT_BOXES_AS_MASKS = False
    # Not in the paper (0 = off): in training, the probability per image that the attention masks
    # come from the ground-truth boxes instead of the detections. A curriculum for short runs from
    # scratch, where the detector is too weak for long to supply matched masks (see the model card).
    _C.TRAIN_GT_BOXES_PROB = 0.0
    # --- panoptic head (Sec. III-A2, Fig. 5) ---
    _C.HEAD_DIM = 128
    _C.NUM_HEAD_CONVS = 4  # 3x3 conv+BN+ReLU layers after the merging one
    _C.NORM = "BN"
    # Not in the paper (0 = off): initial value of one learnable gain with which the attention
    # masks (divided by C_att) are added to their own slot logits, so that output n follows mask n
    # from the start instead of being learned slot by slot (for short runs from scratch).
    _C.MASK_LOGIT_SKIP = 0.0
    # --- loss (Eq. 1) ---
    _C.DET_LOSS_WEIGHT = 0.5  # lambda_det
    _C.PAN_LOSS_WEIGHT = 1.0  # lambda_pan
    # --- inference ---
    # Optional, not in the paper (off = 0): stuff segments smaller than this (pixels at the
    # output size) become void.
    _C.STUFF_AREA_LIMIT = 0
