#!/usr/bin/env python
"""Train and evaluate fastpan_d2 networks (and detectron2's own) the detectron2 way.

    python train_net.py --config-file configs/COCO-PanopticSegmentation/yoso_R_50_800.yaml --num-gpus 8
    python train_net.py --config-file ... --eval-only MODEL.WEIGHTS /path/to/model_final.pth
    python train_net.py --config-file configs/Synthetic-PanopticSegmentation/yoso.yaml --num-gpus 2 MODEL.DEVICE cpu
"""
import logging

import fastpan_d2  # noqa: F401  (first: registers META_ARCHs and datasets, quiets import warnings)
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.engine import default_argument_parser
from detectron2.utils import comm

from fastpan_d2.engine import Trainer, exit_on_user_error, launch, load_cfg, setup_cfg


def main(args):
    cfg = setup_cfg(args.config_file, args.opts, args=args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        results = Trainer.test(cfg, model)
        if comm.is_main_process():
            logging.getLogger("fastpan_d2").info("results: %s", dict(results))
        return results
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def cli(argv=None):
    args = default_argument_parser().parse_args(argv)
    print("Command Line Args:", args)
    # Validate before spawning workers, so a bad config fails once, with one clear line.
    cfg = exit_on_user_error(load_cfg, args.config_file, args.opts)
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
        device=cfg.MODEL.DEVICE,
    )


if __name__ == "__main__":
    cli()
