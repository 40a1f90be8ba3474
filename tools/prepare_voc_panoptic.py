#!/usr/bin/env python
"""Pascal VOC 2012 (+ SBD) -> COCO panoptic PNG + JSON ("voc_2012_panoptic_{train,val}").

Things only (the 20 VOC classes, category id = VOC class index 1..20); background and the 255
boundary band are void, as in FPSNet's Pascal VOC evaluation. Each instance of
SegmentationObject (or SBD's GTinst) becomes one segment whose class is the majority of
SegmentationClass (GTcls) under it.

Splits (the usual "train_aug"): train = VOC2012 seg train ∪ SBD train ∪ SBD val, minus VOC2012
seg val (10,582 images); val = VOC2012 seg val (1,449 images). For an image VOC2012 annotates, its
VOC annotation is used, otherwise SBD's .mat files.

Layout (defaults under $DETECTRON2_DATASETS):
    VOC2012/                       VOCdevkit/VOC2012 (JPEGImages/, SegmentationClass/,
                                   SegmentationObject/, ImageSets/Segmentation/{train,val}.txt)
    benchmark_RELEASE/dataset/     SBD (cls/*.mat, inst/*.mat, train.txt, val.txt), optional
Writes VOC2012/panoptic_{train,val}/*.png and VOC2012/panoptic_{train,val}.json.

    python tools/prepare_voc_panoptic.py [--voc-dir D] [--sbd-dir D] [--workers N]
"""
import argparse
import os
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from fastpan_d2.data.datasets.builtin_meta import VOC_PANOPTIC_CATEGORIES  # noqa: E402
from fastpan_d2.data.datasets.panoptic_io import write_panoptic_dataset  # noqa: E402


def _read_list(path):
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def _load_voc(voc_dir, stem):
    # palette PNGs: np.array of the PIL image gives the palette indices
    cls = np.array(Image.open(os.path.join(voc_dir, "SegmentationClass", stem + ".png")))
    inst = np.array(Image.open(os.path.join(voc_dir, "SegmentationObject", stem + ".png")))
    return cls, inst


def _load_sbd(sbd_dir, stem):
    from scipy.io import loadmat

    cls = loadmat(os.path.join(sbd_dir, "cls", stem + ".mat"))["GTcls"][0, 0]["Segmentation"]
    inst = loadmat(os.path.join(sbd_dir, "inst", stem + ".mat"))["GTinst"][0, 0]["Segmentation"]
    return np.asarray(cls), np.asarray(inst)


def instances_to_panoptic(cls, inst):
    """(class map, instance map) -> (segment id map, {segment id: class}); 0 and 255 are void."""
    ids = np.zeros(inst.shape, np.int64)
    category_of = {}
    for k in np.unique(inst):
        if k in (0, 255):
            continue
        m = inst == k
        labels = cls[m]
        labels = labels[(labels != 0) & (labels != 255)]
        if labels.size == 0:
            continue
        sid = len(category_of) + 1
        ids[m] = sid
        category_of[sid] = int(np.bincount(labels.astype(np.int64)).argmax())
    return ids, category_of


def convert_item(item):
    stem, source, voc_dir, sbd_dir = item
    cls, inst = _load_voc(voc_dir, stem) if source == "voc" else _load_sbd(sbd_dir, stem)
    ids, category_of = instances_to_panoptic(cls, inst)
    h, w = ids.shape
    return {"id": stem, "file_name": stem + ".jpg", "height": h, "width": w}, ids, category_of


def build_splits(voc_dir, sbd_dir):
    seg_sets = os.path.join(voc_dir, "ImageSets", "Segmentation")
    for p in (os.path.join(voc_dir, "JPEGImages"), os.path.join(voc_dir, "SegmentationObject"), seg_sets):
        if not os.path.exists(p):
            raise FileNotFoundError(f"Pascal VOC 2012 not found at {p}: download VOCtrainval_11-May-2012.tar")
    voc_train, voc_val = (_read_list(os.path.join(seg_sets, f"{s}.txt")) for s in ("train", "val"))
    train = [(s, "voc") for s in voc_train]
    if sbd_dir and os.path.isdir(sbd_dir):
        have = set(voc_train) | set(voc_val)
        sbd = sorted(set(_read_list(os.path.join(sbd_dir, "train.txt"))) | set(_read_list(os.path.join(sbd_dir, "val.txt"))))
        train += [(s, "sbd") for s in sbd if s not in have]
    else:
        print(f"SBD not found at {sbd_dir}: train split is VOC2012's own ({len(train)} images)")
    return {"train": sorted(train), "val": [(s, "voc") for s in voc_val]}


def main(argv=None):
    root = os.getenv("DETECTRON2_DATASETS", "datasets")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--voc-dir", default=os.path.join(root, "VOC2012"))
    ap.add_argument("--sbd-dir", default=os.path.join(root, "benchmark_RELEASE", "dataset"))
    ap.add_argument("--workers", type=int, default=None, help="processes (default: all cores; 0 = none)")
    args = ap.parse_args(argv)
    for split, items in build_splits(args.voc_dir, args.sbd_dir).items():
        items = [(stem, src, args.voc_dir, args.sbd_dir) for stem, src in items]
        png_dir = os.path.join(args.voc_dir, f"panoptic_{split}")
        write_panoptic_dataset(items, convert_item, png_dir, VOC_PANOPTIC_CATEGORIES, args.workers)

if __name__ == "__main__":
    main()
