"""``add_fastpan_config(cfg)``: the keys fastpan_d2 adds to detectron2's config.

Shared keys live here; each network's keys come from the adder in its folder.
"""
from detectron2.config import CfgNode as CN

from .modeling.epsnet.config import add_epsnet_config
from .modeling.fpsnet.config import add_fpsnet_config
from .modeling.lpsnet.config import add_lpsnet_config
from .modeling.single_shot.config import add_single_shot_config
from .modeling.yoso.config import add_yoso_config


def add_shared_config(cfg):
    # --- data ---
    # "" = detectron2's DatasetMapper (Panoptic FPN); "PanopticDatasetMapper" = fastpan_d2's.
    cfg.INPUT.DATASET_MAPPER_NAME = ""
    cfg.INPUT.AUGMENTATION = "ResizeShortestEdge"  # | "FixedSize" | "ScaleJitterCrop"
    cfg.INPUT.FIXED_SIZE = (550, 550)  # (H, W) for FixedSize
    cfg.INPUT.SCALE_RANGE = (1.0, 1.5)  # scale factors for FixedSize / ScaleJitterCrop
    cfg.INPUT.SCALE_BASE_SIZE = (1024, 2048)  # (H, W) ScaleJitterCrop scales
    cfg.INPUT.COLOR_AUG_SSD = False  # SSD's photometric distortion in training (data/transforms.py)
    # The built-in synthetic dataset (fastpan_shapes_*).
    cfg.DATASETS.SYNTHETIC = CN()
    cfg.DATASETS.SYNTHETIC.ROOT = ""  # "" = $DETECTRON2_DATASETS/fastpan_shapes
    cfg.DATASETS.SYNTHETIC.SEED = 0
    cfg.DATASETS.SYNTHETIC.IMAGE_SIZE = (128, 128)
    cfg.DATASETS.SYNTHETIC.NUM_TRAIN = 300
    cfg.DATASETS.SYNTHETIC.NUM_VAL = 50

    # --- solver ---
    cfg.SOLVER.OPTIMIZER = "SGD"  # | "ADAM" | "ADAMW"
    cfg.SOLVER.BETAS = (0.9, 0.999)  # Adam / AdamW
    cfg.SOLVER.BACKBONE_MULTIPLIER = 1.0  # LR multiplier of the backbone's parameters
    cfg.SOLVER.POLY_LR_POWER = 0.9  # for LR_SCHEDULER_NAME "WarmupPolyLR"
    cfg.SOLVER.POLY_LR_CONSTANT_ENDING = 0.0
    # SOLVER.CLIP_GRADIENTS.CLIP_TYPE also accepts "full_model" (norm over all parameters).

    # --- timing of inference (engine/timing.py) ---
    cfg.TEST.TIMING = CN()
    cfg.TEST.TIMING.ENABLED = True
    cfg.TEST.TIMING.WARMUP = 3  # images per process not counted

    # --- fast inference path (engine/fast_inference.py; evaluation, tools/benchmark.py --fast) ---
    cfg.TEST.FOLD_BATCHNORM = False  # fold FrozenBN / eval-mode BN into the conv before it (exact)
    cfg.TEST.CHANNELS_LAST = False  # channels-last weights, hence activations
    cfg.TEST.AMP = CN()
    cfg.TEST.AMP.ENABLED = False  # autocast the forward; outputs returned as float32
    cfg.TEST.AMP.DTYPE = ""  # "" = bfloat16 on CPU (where the CPU has it), float16 on CUDA


def add_fastpan_config(cfg):
    add_shared_config(cfg)
    add_epsnet_config(cfg)
    add_fpsnet_config(cfg)
    add_lpsnet_config(cfg)
    add_single_shot_config(cfg)
    add_yoso_config(cfg)
    return cfg


def get_fastpan_cfg():
    """detectron2's default config with every fastpan_d2 key added."""
    from detectron2.config import get_cfg

    return add_fastpan_config(get_cfg())
