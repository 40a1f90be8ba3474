"""Shared by the networks' short training tests: PQ before and after training through the engine."""
import torch

from fastpan_d2.engine import Trainer, setup_cfg


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
