#!/usr/bin/env python
"""``make demo``: train a network on the built-in synthetic dataset on CPU, evaluate, visualize.

    python tools/demo.py --net single_shot [--output-dir output/demo_single_shot] [--num-vis 4] [opts]

Trains ``configs/Synthetic-PanopticSegmentation/<net>.yaml`` (progress and ETA in the log every
20 iterations), evaluates PQ with COCOPanopticEvaluator on ``fastpan_shapes_val``, prints the
PQ/SQ/RQ table (All / Things / Stuff) with the inference timing, and writes
``<output-dir>/predictions.png``: one row per validation image with input | ground truth |
prediction, drawn by detectron2's Visualizer.
"""
import argparse
import logging
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fastpan_d2  # noqa: E402,F401
from fastpan_d2.engine import Trainer, UserInputError, exit_on_user_error, load_cfg  # noqa: E402

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs",
                          "Synthetic-PanopticSegmentation")


def pq_table(pq):
    rows = ["          PQ     SQ     RQ   #categories"]
    for name, key in (("All", ""), ("Things", "_th"), ("Stuff", "_st")):
        rows.append(f"{name:<7} {pq['PQ' + key]:6.2f} {pq['SQ' + key]:6.2f} {pq['RQ' + key]:6.2f}")
    return "\n".join(rows)


def draw_grid(cfg, model, num_vis, path):
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.utils.visualizer import ColorMode, Visualizer
    from PIL import Image

    from fastpan_d2.data.panoptic_mapper import read_image_or_fail, rgb_to_id
    from fastpan_d2.engine import build_dataset_mapper

    test_name = cfg.DATASETS.TEST[0]
    gt_name = test_name[: -len("_separated")] if test_name.endswith("_separated") else test_name
    gt_dicts = DatasetCatalog.get(gt_name)[:num_vis]
    test_dicts = DatasetCatalog.get(test_name)[:num_vis]
    gt_meta, pred_meta = MetadataCatalog.get(gt_name), MetadataCatalog.get(test_name)
    mapper = build_dataset_mapper(cfg, is_train=False)
    rows = []
    model.eval()
    for gt_d, test_d in zip(gt_dicts, test_dicts):
        image = read_image_or_fail(gt_d["file_name"], "RGB")
        pan = torch.from_numpy(rgb_to_id(read_image_or_fail(gt_d["pan_seg_file_name"], "RGB")))
        gt_vis = Visualizer(image, gt_meta, instance_mode=ColorMode.IMAGE).draw_panoptic_seg(
            pan, gt_d["segments_info"], alpha=0.6).get_image()
        with torch.no_grad():
            out = model([mapper(test_d)])[0]
        seg, info = out["panoptic_seg"]
        pred_vis = Visualizer(image, pred_meta).draw_panoptic_seg(seg.cpu(), info, alpha=0.6).get_image()
        rows.append(np.concatenate([image, gt_vis, pred_vis], axis=1))
    grid = np.concatenate(rows, axis=0)
    Image.fromarray(grid).save(path)
    return path


def run(args):
    config = os.path.join(CONFIG_DIR, f"{args.net}.yaml")
    if not os.path.isfile(config):
        nets = sorted(f[:-5] for f in os.listdir(CONFIG_DIR) if f.endswith(".yaml") and not f.startswith("Base"))
        raise UserInputError(f"no synthetic config for NET={args.net}: {config} (available: {', '.join(nets)})")
    output_dir = args.output_dir or os.path.join("output", f"demo_{args.net}")
    cfg = load_cfg(config, ["OUTPUT_DIR", output_dir] + list(args.opts))
    cfg.freeze()
    os.makedirs(output_dir, exist_ok=True)
    from detectron2.utils.logger import setup_logger

    setup_logger(output_dir)
    setup_logger(output_dir, name="fastpan_d2")
    logging.getLogger("detectron2").info("Training %s from %s for %d iterations", args.net, config, cfg.SOLVER.MAX_ITER)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()  # the EvalHook evaluates once at the end
    results = Trainer.test(cfg, trainer.model)
    res = results[cfg.DATASETS.TEST[0]]
    print(f"\n== {args.net} on {cfg.DATASETS.TEST[0]} after {cfg.SOLVER.MAX_ITER} iterations "
          f"(batch {cfg.SOLVER.IMS_PER_BATCH}) ==")
    print(pq_table(res["panoptic_seg"]))
    t = res.get("timing")
    if t:
        print(f"inference: median {t['latency_ms_median']:.1f} ms/image, p90 {t['latency_ms_p90']:.1f} ms, "
              f"{t['fps']:.1f} FPS (CPU, {t['num_images']} images)")
    path = draw_grid(cfg, trainer.model, args.num_vis, os.path.join(output_dir, "predictions.png"))
    print(f"prediction grid (input | ground truth | prediction): {path}")
    return results


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--net", default="single_shot", help="single_shot (default), epsnet, fpsnet, lpsnet, yoso or panoptic_fpn")
    p.add_argument("--output-dir", default=None)
    p.add_argument("--num-vis", type=int, default=4)
    p.add_argument("opts", nargs=argparse.REMAINDER, default=[])
    args = p.parse_args(argv)
    return exit_on_user_error(run, args)


if __name__ == "__main__":
    main()
