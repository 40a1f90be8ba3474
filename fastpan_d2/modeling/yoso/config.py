"""Config keys of YOSO (defaults are the paper's values / the authors' released configs)."""
from detectron2.config import CfgNode as CN


def add_yoso_config(cfg):
    cfg.MODEL.YOSO = CN()
    y = cfg.MODEL.YOSO
    y.IN_FEATURES = ["res2", "res3", "res4", "res5"]  # C2..C5
    y.SIZE_DIVISIBILITY = 32

    # --- feature pyramid aggregator (Sec. 3.2) ---
    y.AGGREGATOR = CN()
    # c2, c3, c4, c5: channels the 1x1 convs compress C2..C5 to (Table 5 setting).
    y.AGGREGATOR.COMPRESS_CHANNELS = [128, 256, 512, 1024]
    y.AGGREGATOR.AGGREGATION = "CFA"  # "IFA" (interpolate, concat, 1x1) | "CFA" (1x1 per level, interpolate, sum)
    y.AGGREGATOR.DEFORMABLE = True  # False: plain 3x3 convs instead of DCNv2 in the top-down path
    y.AGGREGATOR.NORM = "BN"  # norm after the DCNs and the final projection
    y.AGGREGATOR.COORD_CONV = True  # append (x, y) coordinates before the final projection

    # --- separable dynamic decoder (Sec. 3.3) ---
    y.HIDDEN_DIM = 256  # d
    y.NUM_PROPOSALS = 100  # n
    y.NUM_STAGES = 2  # T
    y.NUM_ATTENTION_BLOCKS = 2  # N
    y.KERNEL_SIZE = 3  # t (dynamic 1D conv kernel)
    y.ATTENTION = "SDCA"  # "MHCA" | "DCA" | "SDCA" | "PDCA" | "DDCA" (Table 6)
    # Softmax over the source tokens of the cross-token dynamic kernel (SDCA/PDCA/DCA); not in Eq. 9,
    # see attention.py: without it training from scratch barely learns to classify.
    y.POINTWISE_SOFTMAX = True
    y.NUM_HEADS = 8  # heads of the post-attention self-attention and of MHCA
    y.DIM_FEEDFORWARD = 2048
    y.DROPOUT = 0.0
    y.NUM_CLS_FCS = 1  # Linear+LN+ReLU layers of the class FFN before the classifier
    y.NUM_MASK_FCS = 1  # ... of the mask-kernel FFN
    # One class FFN and one mask-kernel FFN shared by all T stages (as DETR / MaskFormer share their
    # prediction heads over decoder layers) instead of one per stage; the paper does not say which.
    # Shared, a kernel that changes little from stage to stage keeps its mask, so the masked pooling
    # of the next stage (Eq. 3) pools the segment the kernel is matched to.
    y.SHARE_HEADS = False

    # --- set prediction loss (Hungarian matching) ---
    y.CLASS_WEIGHT = 2.0
    y.MASK_WEIGHT = 5.0  # sigmoid BCE on sampled points
    y.DICE_WEIGHT = 5.0
    y.NO_OBJECT_WEIGHT = 0.1
    y.TRAIN_NUM_POINTS = 12544
    y.OVERSAMPLE_RATIO = 3.0
    y.IMPORTANCE_SAMPLE_RATIO = 0.75
    # Weight of a training-only per-pixel classification loss on the aggregated features S (a 1x1
    # conv to the l classes, dropped at inference). Not in the paper (0 = off, the paper's setting);
    # configs/Synthetic-PanopticSegmentation/yoso.yaml uses it to train from scratch.
    y.AUX_SEMANTIC_WEIGHT = 0.0

    # --- inference (MaskFormer-style panoptic merge) ---
    y.TEST = CN()
    y.TEST.TEMPERATURE = 1.0  # class probabilities = softmax(logits / TEMPERATURE)
    y.TEST.OBJECT_MASK_THRESHOLD = 0.8
    y.TEST.OVERLAP_THRESHOLD = 0.8
    y.TEST.SEMANTIC_ON = False  # also return "sem_seg" (C, H, W): costs C x H x W at full size
    y.TEST.INSTANCE_ON = False  # also return "instances" (thing segments with masks and scores)
