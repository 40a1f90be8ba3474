"""A short FPSNet training run on the synthetic data (through the engine) must raise PQ well
above the untrained model's."""
import os

import pytest
import torch

from fastpan_d2.engine import Trainer, setup_cfg

from .fpsnet_testutils import REPO

MAX_ITER = int(os.environ.get("FPSNET_TEST_ITERS", 300))


def small_cfg(output_dir):
    # The synthetic config with the images at 64x64 and every width cut down, so a few hundred
    # iterations run in a couple of minutes on two busy cores.
    opts = [
        "OUTPUT_DIR", str(output_dir),
        "SOLVER.MAX_ITER", str(MAX_ITER),
        "SOLVER.WARMUP_ITERS", "20",
        "SOLVER.BASE_LR", "0.02",
        "INPUT.MIN_SIZE_TRAIN", "(64,)",
        "INPUT.MAX_SIZE_TRAIN", "64",
        "INPUT.MIN_SIZE_TEST", "64",
        "INPUT.MAX_SIZE_TEST", "64",
        "MODEL.FPN.OUT_CHANNELS", "32",
        "MODEL.ANCHOR_GENERATOR.SIZES",
        "[[4, 5.04, 6.35], [8, 10.08, 12.70], [16, 20.16, 25.40], [32, 40.32, 50.80], [64, 80.63, 101.59]]",
        "MODEL.RETINANET.NUM_CONVS", "1",
        "MODEL.FPSNET.FEATURE_DIM", "32",
        "MODEL.FPSNET.HEAD_DIM", "32",
        "MODEL.FPSNET.NUM_HEAD_CONVS", "2",
        "MODEL.FPSNET.NUM_ATTENTION_MASKS", "16",
        "TEST.TIMING.ENABLED", "False",
        "DATALOADER.NUM_WORKERS", "0",
    ]
    return setup_cfg(os.path.join(REPO, "configs/Synthetic-PanopticSegmentation/fpsnet.yaml"), opts)


def pq(results):
    return results["fastpan_shapes_val"]["panoptic_seg"]


def test_short_training_raises_pq(tmp_path):
    torch.manual_seed(0)
    cfg = small_cfg(tmp_path)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    before = pq(Trainer.test(cfg, trainer.model))
    trainer.train()
    after = pq(Trainer.test(cfg, trainer.model))
    print(f"FPSNet PQ before {before['PQ']:.1f} after {MAX_ITER} iterations {after}")
    assert before["PQ"] < 10.0
    assert after["PQ"] > before["PQ"] + 15.0
    assert after["PQ_st"] > 30.0  # stuff from the panoptic head's stuff channels
    assert after["PQ_th"] > before["PQ_th"] + 5.0  # things through the attention masks
