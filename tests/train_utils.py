"""Shared by the networks' short training tests: PQ before and after training through the engine."""
import os

import torch

from fastpan_d2.engine import Trainer, setup_cfg

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pq_before_and_after(config_file, opts, eval_dataset, seed=0):
    """Build ``Trainer`` from ``config_file`` + ``opts``, evaluate, train, evaluate again.

    Returns the ``panoptic_seg`` results on ``eval_dataset`` (PQ, PQ_th, PQ_st, ...) before and after.
    """
    torch.manual_seed(seed)
    cfg = setup_cfg(config_file, opts)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    before = Trainer.test(cfg, trainer.model)[eval_dataset]["panoptic_seg"]
    trainer.train()
    after = Trainer.test(cfg, trainer.model)[eval_dataset]["panoptic_seg"]
    return before, after


def synthetic_config(name):
    """Path of ``configs/Synthetic-PanopticSegmentation/<name>.yaml``."""
    return os.path.join(REPO, "configs", "Synthetic-PanopticSegmentation", f"{name}.yaml")


def tiny_synthetic_opts(tmp_path, max_iter, num_train=8, num_val=2, image_size=64, warmup_iters=20,
                        resize_shortest_edge=True):
    """Config overrides shared by the networks' short training tests: a private synthetic set of
    ``num_train`` images of ``image_size``² under ``tmp_path``, evaluated on those same training
    images (the tests check that the whole pipeline can fit panoptic ground truth; generalisation
    is what the full synthetic runs in the model cards measure), ``max_iter`` iterations with no LR
    step, no flip, no timing hook, data loaded in the main process; with ``resize_shortest_edge``
    the train and test resize keep the images at ``image_size`` (networks whose synthetic config
    uses ResizeShortestEdge)."""
    resize = [
        "INPUT.MIN_SIZE_TRAIN", f"({image_size},)",
        "INPUT.MAX_SIZE_TRAIN", str(image_size),
        "INPUT.MIN_SIZE_TEST", str(image_size),
        "INPUT.MAX_SIZE_TEST", str(image_size),
    ] if resize_shortest_edge else []
    return resize + [
        "OUTPUT_DIR", str(tmp_path / "out"),
        "DATASETS.SYNTHETIC.ROOT", str(tmp_path / "data"),
        "DATASETS.SYNTHETIC.IMAGE_SIZE", f"({image_size}, {image_size})",
        "DATASETS.SYNTHETIC.NUM_TRAIN", str(num_train),
        "DATASETS.SYNTHETIC.NUM_VAL", str(num_val),
        "DATASETS.TEST", "('fastpan_shapes_train',)",
        "SOLVER.MAX_ITER", str(max_iter),
        "SOLVER.STEPS", "(100000,)",
        "SOLVER.WARMUP_ITERS", str(warmup_iters),
        "INPUT.RANDOM_FLIP", "none",
        "TEST.TIMING.ENABLED", "False",
        "DATALOADER.NUM_WORKERS", "0",
    ]
