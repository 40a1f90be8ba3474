"""Config keys of EPSNet (defaults are the paper's values, arXiv 2003.10142).

Symbols: k = ``NUM_PROTOTYPES``; λc, λb, λm, λs = ``LOSS_WEIGHT_CLS/BOX/MASK/SEM``.
Ablation switches of the paper's tables: ``FUSION`` (Tables 1, 5), ``CLA_SOURCES`` (Table 5),
``NUM_PROTOTYPES`` (Table 2), ``SEM_HEAD`` (Table 3), ``SEM_POOLING`` (Table 4),
``LOSS_BALANCE`` (Table 1). ``NMS_TYPE`` chooses Fast NMS (YOLACT) or standard NMS.
"""
from detectron2.config import CfgNode as CN


def add_epsnet_config(cfg):
    cfg.MODEL.EPSNET = CN()
    e = cfg.MODEL.EPSNET
    # Classes come from the metadata of DATASETS.TRAIN[0] (PanopticCategories): N_thing for the
    # instance head, N_stuff + 1 ('other' = every thing) for the semantic head.
    # Pad the batched input to a multiple of this (FPN's res5 needs 32; the P6/P7 convs do not).
    e.SIZE_DIVISIBILITY = 32
    e.NORM = "GN"  # normalization of every head's conv blocks (paper: GroupNorm)
    e.HEAD_CHANNELS = 256  # channels of the heads' conv blocks (= FPN channels in the paper)

    # --- fusion of F3-F5 into the protohead's input ---
    e.FUSION = "CLA"  # "CLA" (cross-layer attention, Eq. 2-5) | "PanopticFPN" (Table 1/5 baseline)
    e.FUSION_IN_FEATURES = ["p3", "p4", "p5"]  # first = target (F3); PanopticFPN: 1, 2, 3 blocks
    e.CLA_SOURCES = ["p5", "p4", "p3"]  # Table 5: ["p3"] = "CLA fusion (F3)"
    e.CLA_EMBED_CHANNELS = 128  # channels of θ, φ, h (1/2 of the input channels)
    e.CLA_SHARED = True  # one cross attention block shared by all sources (paper)
    e.CLA_SCALE = 1.0  # s_ij multiplier before the softmax (paper: plain dot product = 1.0)

    # --- protohead ---
    e.NUM_PROTOTYPES = 32  # k (Table 2: 16 / 32 / 64)
    e.PROTO_NUM_CONVS = 3
    e.PROTO_ACTIVATION = "relu"  # on the prototypes: "relu" (YOLACT, the authors' base) | "none"

    # --- instance head (YOLACT style) ---
    e.INSTANCE_IN_FEATURES = ["p3", "p4", "p5"]  # paper text: F3-F5; authors' code: p3-p7
    e.IOU_THRESHOLDS = [0.4, 0.5]  # negative < 0.4, positive >= 0.5
    e.IOU_LABELS = [0, -1, 1]
    e.BBOX_REG_WEIGHTS = (10.0, 10.0, 5.0, 5.0)  # YOLACT's variances (0.1, 0.2)
    e.SMOOTH_L1_BETA = 1.0
    e.FOCAL_LOSS_ALPHA = 0.25
    e.FOCAL_LOSS_GAMMA = 2.0
    e.MASKS_TO_TRAIN = 100  # at most this many positive anchors per image get a mask loss
    e.PRIOR_PROB = 0.01

    # --- semantic head ---
    e.SEM_HEAD = "coefficients"  # "coefficients" (Fig. 4) | "standard" (1x1 conv on the fused map)
    e.SEM_IN_FEATURE = "p7"  # F7
    e.SEM_POOLING = "avg"  # Table 4: avg | max | center | top-left | top-right | bottom-left | bottom-right
    e.IGNORE_VALUE = 255

    # --- losses: L = λc Lc + λb Lb + λm Lm + λs Ls ---
    e.LOSS_BALANCE = True  # False: every λ = 1 (Table 1)
    e.LOSS_WEIGHT_CLS = 1.0
    e.LOSS_WEIGHT_BOX = 1.5
    e.LOSS_WEIGHT_MASK = 6.125
    e.LOSS_WEIGHT_SEM = 2.0

    # --- inference ---
    e.NMS_TYPE = "fast"  # "fast" (YOLACT Fast NMS, vectorized) | "standard" (batched_nms)
    e.NMS_THRESH = 0.5
    e.SCORE_THRESH = 0.05  # candidates entering NMS
    e.NMS_TOP_K = 200  # candidates per class (Fast NMS) / in total per level (standard)
    e.DETECTIONS_PER_IMAGE = 100
    # Panoptic merge (Kirillov et al. heuristic, as the paper says).
    e.INSTANCE_SCORE_THRESH = 0.3  # detections below this are not painted
    e.OVERLAP_THRESH = 0.5  # drop an instance if more than this fraction of it is already taken
    e.STUFF_AREA_THRESH = 4096  # stuff segments smaller than this (pixels, output size) are void
