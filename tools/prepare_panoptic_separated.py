#!/usr/bin/env python
"""Semantic PNGs of detectron2's *separated* panoptic form, from COCO panoptic ground truth.

detectron2's ``register_coco_panoptic_separated`` (Panoptic FPN) reads one semantic PNG per image
where every thing pixel is 0, the stuff categories (ascending dataset id) are 1..S and void /
unlabeled pixels are 255. This writes them from a panoptic JSON + its PNG folder.

    # COCO 2017 under $DETECTRON2_DATASETS/coco -> coco/panoptic_stuff_{train,val}2017/
    python tools/prepare_panoptic_separated.py --coco
    # any COCO-panoptic dataset
    python tools/prepare_panoptic_separated.py --json PAN.json --png-dir PAN_DIR --out-dir OUT_DIR
"""
import argparse
import json
import os
import sys
from multiprocessing import Pool

import cv2

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from fastpan_d2.data.datasets.panoptic_io import (  # noqa: E402
    read_panoptic_png,
    semantic_from_panoptic,
    separated_semantic_lut,
)


def _convert_one(args):
    ann, png_dir, out_dir, lut = args
    ids = read_panoptic_png(os.path.join(png_dir, ann["file_name"]))
    sem = semantic_from_panoptic(ids, ann["segments_info"], lut)
    out = os.path.join(out_dir, ann["file_name"])
    if not cv2.imwrite(out, sem):
        raise OSError(f"Cannot write {out}")


def convert(json_file, png_dir, out_dir, workers=None):
    """Write ``out_dir/<annotation file_name>`` for every annotation of ``json_file``."""
    for p in (json_file, png_dir):
        if not os.path.exists(p):
            raise FileNotFoundError(f"COCO panoptic ground truth not found at {p}")
    with open(json_file) as f:
        data = json.load(f)
    lut = separated_semantic_lut(data["categories"])
    os.makedirs(out_dir, exist_ok=True)
    jobs = [(ann, png_dir, out_dir, lut) for ann in data["annotations"]]
    if workers == 0 or len(jobs) < 64:
        for j in jobs:
            _convert_one(j)
    else:
        with Pool(workers) as pool:
            for _ in pool.imap_unordered(_convert_one, jobs, chunksize=32):
                pass
    return len(jobs)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--coco", action="store_true", help="COCO 2017 train+val under $DETECTRON2_DATASETS/coco")
    ap.add_argument("--json", help="panoptic JSON")
    ap.add_argument("--png-dir", help="folder of the panoptic PNGs")
    ap.add_argument("--out-dir", help="output folder of the semantic PNGs")
    ap.add_argument("--workers", type=int, default=None, help="processes (default: all cores; 0 = none)")
    args = ap.parse_args(argv)
    if args.coco:
        coco = os.path.join(os.getenv("DETECTRON2_DATASETS", "datasets"), "coco")
        jobs = [
            (
                os.path.join(coco, "annotations", f"panoptic_{s}2017.json"),
                os.path.join(coco, f"panoptic_{s}2017"),
                os.path.join(coco, f"panoptic_stuff_{s}2017"),
            )
            for s in ("train", "val")
        ]
    elif args.json and args.png_dir and args.out_dir:
        jobs = [(args.json, args.png_dir, args.out_dir)]
    else:
        ap.error("give --coco, or --json, --png-dir and --out-dir")
    for j, p, o in jobs:
        n = convert(j, p, o, args.workers)
        print(f"{o}: {n} semantic PNGs")


if __name__ == "__main__":
    main()
