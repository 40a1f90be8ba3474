#!/usr/bin/env python
"""ADE20K (SceneParsing, 150 classes) -> COCO panoptic PNG + JSON ("ade20k_panoptic_{train,val}").

Inputs under ADEChallengeData2016/ (ADEChallengeData2016.zip + the instance annotations of the
ADE20K instance-segmentation benchmark, annotations_instance.tar):
    images/{training,validation}/*.jpg
    annotations/{training,validation}/*.png           semantic: 0 = other (void), k = class k-1
    annotations_instance/{training,validation}/*.png  R = instance class, G = instance id
Output:
    ade20k_panoptic_{train,val}/*.png and ade20k_panoptic_{train,val}.json, category ids 0..149
    (the 150 scene-parsing classes; 100 things, 50 stuff, see fastpan_d2/data/datasets/builtin_meta.py).

Things: every (R, G) instance of annotations_instance becomes one segment, its class is the
majority of the semantic map under it (instances whose majority is void or stuff are dropped).
Stuff: the pixels of each stuff class not covered by an instance form one segment. Pixels of a
thing class that no instance covers, and class 0, are void.

    python tools/prepare_ade20k_panoptic.py [--ade-dir D] [--workers N]
"""
import argparse
import os
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from fastpan_d2.data.datasets.builtin_meta import ADE20K_PANOPTIC_CATEGORIES  # noqa: E402
from fastpan_d2.data.datasets.panoptic_io import write_panoptic_dataset  # noqa: E402

_IS_THING = np.array([c["isthing"] for c in ADE20K_PANOPTIC_CATEGORIES] + [0], bool)  # +1: void


def ade_to_panoptic(sem, inst_rgb):
    """semantic map (0 void, 1..150) + instance RGB -> (segment id map, {segment id: category id})."""
    sem = sem.astype(np.int64)
    cat = np.where(sem > 0, sem - 1, 150)  # category id per pixel, 150 = void
    key = inst_rgb[..., 0].astype(np.int64) * 256 + inst_rgb[..., 1].astype(np.int64)
    has_inst = inst_rgb[..., 1] > 0
    ids = np.zeros(sem.shape, np.int64)
    category_of = {}
    if has_inst.any():
        keys, inv = np.unique(key[has_inst], return_inverse=True)
        # majority category of each instance in one pass: 2-D histogram (instance, category)
        hist = np.bincount(inv * 151 + cat[has_inst], minlength=len(keys) * 151).reshape(len(keys), 151)
        major = hist.argmax(1)
        keep = _IS_THING[major]
        seg_of_inst = np.zeros(len(keys), np.int64)
        seg_of_inst[keep] = np.arange(1, keep.sum() + 1)
        ids[has_inst] = seg_of_inst[inv]
        category_of.update({int(s): int(c) for s, c in zip(seg_of_inst[keep], major[keep])})
    free = ids == 0
    for c in np.unique(cat[free]):
        if c == 150 or _IS_THING[c]:
            continue
        sid = len(category_of) + 1
        ids[free & (cat == c)] = sid
        category_of[sid] = int(c)
    return ids, category_of


def convert_item(item):
    stem, ade_dir, dirname = item
    sem = np.array(Image.open(os.path.join(ade_dir, "annotations", dirname, stem + ".png")))
    inst = np.array(Image.open(os.path.join(ade_dir, "annotations_instance", dirname, stem + ".png")).convert("RGB"))
    ids, category_of = ade_to_panoptic(sem, inst)
    h, w = ids.shape
    return {"id": stem, "file_name": stem + ".jpg", "height": h, "width": w}, ids, category_of


def main(argv=None):
    root = os.getenv("DETECTRON2_DATASETS", "datasets")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ade-dir", default=os.path.join(root, "ADEChallengeData2016"))
    ap.add_argument("--workers", type=int, default=None, help="processes (default: all cores; 0 = none)")
    args = ap.parse_args(argv)
    for split, dirname in (("train", "training"), ("val", "validation")):
        folders = [os.path.join(args.ade_dir, sub, dirname) for sub in ("images", "annotations", "annotations_instance")]
        for p in folders:
            if not os.path.isdir(p):
                raise FileNotFoundError(
                    f"ADE20K not found at {p}: unzip ADEChallengeData2016.zip and the instance annotations "
                    f"(annotations_instance.tar) into {args.ade_dir}"
                )
        stems = sorted(os.path.splitext(f)[0] for f in os.listdir(folders[2]) if f.endswith(".png"))
        items = [(s, args.ade_dir, dirname) for s in stems]
        png_dir = os.path.join(args.ade_dir, f"ade20k_panoptic_{split}")
        write_panoptic_dataset(items, convert_item, png_dir, ADE20K_PANOPTIC_CATEGORIES, args.workers)

if __name__ == "__main__":
    main()
