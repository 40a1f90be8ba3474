"""FPSNet's configs: paper defaults, the paper configs load and build."""
import glob
import os

import pytest
from detectron2.modeling import build_model

from fastpan_d2.config import get_fastpan_cfg
from fastpan_d2.engine import load_cfg

from .fpsnet_testutils import REPO

PAPER_CONFIGS = sorted(
    glob.glob(os.path.join(REPO, "configs/Cityscapes-PanopticSegmentation/fpsnet_*.yaml"))
    + glob.glob(os.path.join(REPO, "configs/PascalVOC-PanopticSegmentation/fpsnet_*.yaml"))
)


def test_defaults_are_the_papers():
    c = get_fastpan_cfg().MODEL.FPSNET
    assert (c.NUM_ATTENTION_MASKS, c.ATTENTION_SCALE) == (50, 50.0)
    assert (c.DET_LOSS_WEIGHT, c.PAN_LOSS_WEIGHT) == (0.5, 1.0)
    assert c.SHUFFLE_MASKS and not c.HARD_MASKS and c.MATCH_IOU_THRESH == 0.5
    assert c.IN_FEATURES == ["p3", "p4", "p5"] and c.FEATURE_DIM == 128 and c.NUM_HEAD_CONVS == 4
    assert c.STUFF_AREA_LIMIT == 0
    assert c.MASK_LOGIT_SKIP == 0.0 and c.TRAIN_GT_BOXES_PROB == 0.0  # not in the paper: off


def test_paper_configs():
    assert len(PAPER_CONFIGS) == 3
    for path in PAPER_CONFIGS:
        cfg = load_cfg(path)
        assert cfg.MODEL.META_ARCHITECTURE == "FPSNet"
        assert cfg.MODEL.RESNETS.DEPTH == 50
        assert cfg.MODEL.RETINANET.IN_FEATURES == ["p3", "p4", "p5", "p6", "p7"]
        # 8 GPUs x 4 images; linear scaling of the paper's LR 0.01 at batch 4 and 200k steps.
        s = cfg.SOLVER
        assert s.BASE_LR / s.IMS_PER_BATCH == pytest.approx(0.01 / 4)
        assert s.MAX_ITER * s.IMS_PER_BATCH == 200000 * 4
        assert (s.MOMENTUM, s.WEIGHT_DECAY, s.POLY_LR_POWER) == (0.9, 0.001, 0.9)
        assert s.LR_SCHEDULER_NAME == "WarmupPolyLR"


def test_cityscapes_model_builds_with_the_datasets_classes():
    path = [p for p in PAPER_CONFIGS if p.endswith("fpsnet_R_50_1024x2048.yaml")][0]
    cfg = load_cfg(path, ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", ""])
    model = build_model(cfg)
    assert model.categories.num_things == 8 and model.categories.num_stuff == 11
    assert model.panoptic_head.predictor.out_channels == 50 + 11 + 2
