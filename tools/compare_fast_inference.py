#!/usr/bin/env python
"""How much the fast inference path changes a trained model's panoptic output.

    python tools/compare_fast_inference.py --config-file configs/Synthetic-PanopticSegmentation/yoso.yaml \
        --weights output/yoso/model_final.pth [--json out.json] [KEY VALUE ...]

Runs the model on the config's first test dataset in float32 and with the fast path
(engine/fast_inference.py: BatchNorm folded, channels-last, autocast) and reports, over all
images:

* ``category_agreement``: fraction of pixels whose category (that of the segment covering it;
  void counts as a category) is the same in both outputs;
* ``segment_agreement``: fraction of pixels whose segment is "the same" in both: the float32
  segment and the fast segment covering the pixel are each other's best match (largest overlap);
* ``matched_segments``: fraction of float32 segments with a fast segment of the same category at
  IoU > 0.5 (PQ's matching rule), and ``segments_fp32`` / ``segments_fast``;
* PQ / PQ_th / PQ_st of both (the Trainer's evaluation: COCOPanopticEvaluator) and their change.
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fastpan_d2  # noqa: E402,F401
from fastpan_d2.engine import Trainer, UserInputError, exit_on_user_error, fast_inference_copy, setup_cfg  # noqa: E402

FAST = ["TEST.FOLD_BATCHNORM", "True", "TEST.CHANNELS_LAST", "True", "TEST.AMP.ENABLED", "True"]


def _category_map(seg, infos):
    lut = torch.full((int(seg.max()) + 1,), -1, dtype=torch.long)
    for s in infos:
        lut[s["id"]] = s["category_id"]
    return lut[seg.long()]


def compare_outputs(a, b):
    """Pixel and segment agreement of two ``(panoptic_seg, segments_info)`` outputs of one image."""
    (seg_a, info_a), (seg_b, info_b) = a, b
    seg_a, seg_b = seg_a.long().cpu(), seg_b.long().cpu()
    cat_same = int((_category_map(seg_a, info_a) == _category_map(seg_b, info_b)).sum())
    na, nb = int(seg_a.max()) + 1, int(seg_b.max()) + 1
    overlap = torch.bincount((seg_a * nb + seg_b).flatten(), minlength=na * nb).view(na, nb)
    best_b, best_a = overlap.argmax(1), overlap.argmax(0)
    mutual = best_a[best_b] == torch.arange(na)  # a's best b has a as its best a
    same_pixels = int(overlap[torch.arange(na)[mutual], best_b[mutual]].sum())
    area_a, area_b = overlap.sum(1), overlap.sum(0)
    cats_b = {s["id"]: s["category_id"] for s in info_b}
    matched = 0
    for s in info_a:
        j = int(best_b[s["id"]])
        iou = overlap[s["id"], j] / (area_a[s["id"]] + area_b[j] - overlap[s["id"], j])
        matched += int(cats_b.get(j) == s["category_id"] and iou > 0.5)
    return {"pixels": seg_a.numel(), "category_same": cat_same, "segment_same": same_pixels,
            "segments_a": len(info_a), "segments_b": len(info_b), "matched": matched}


def compare(args):
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling import build_model

    if not os.path.isfile(args.weights):
        raise UserInputError(f"weights file does not exist: {args.weights}")
    opts = list(args.opts) + ["MODEL.WEIGHTS", args.weights, "TEST.TIMING.ENABLED", "False"]
    cfg = setup_cfg(args.config_file, opts)
    model = build_model(cfg)
    DetectionCheckpointer(model).load(args.weights)
    model.eval()
    fast = fast_inference_copy(model, setup_cfg(args.config_file, opts + FAST))
    totals = {}
    loader = Trainer.build_test_loader(cfg, cfg.DATASETS.TEST[0])
    with torch.no_grad():
        for batch in loader:
            for a, b in zip(model(batch), fast(batch)):
                for k, v in compare_outputs(a["panoptic_seg"], b["panoptic_seg"]).items():
                    totals[k] = totals.get(k, 0) + v
    result = {
        "config": args.config_file,
        "weights": args.weights,
        "fast": {k: str(v) for k, v in fast._fast_inference.items()},
        "category_agreement": totals["category_same"] / totals["pixels"],
        "segment_agreement": totals["segment_same"] / totals["pixels"],
        "matched_segments": totals["matched"] / max(totals["segments_a"], 1),
        "segments_fp32": totals["segments_a"],
        "segments_fast": totals["segments_b"],
    }
    for name, extra in (("fp32", []), ("fast", FAST)):
        c = setup_cfg(args.config_file, opts + extra)
        pq = Trainer.test(c, model)[c.DATASETS.TEST[0]]["panoptic_seg"]
        result[f"pq_{name}"] = {k: pq[k] for k in ("PQ", "PQ_th", "PQ_st")}
    result["pq_change"] = {k: result["pq_fast"][k] - result["pq_fp32"][k] for k in ("PQ", "PQ_th", "PQ_st")}
    print(json.dumps(result, indent=2))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True)
    p.add_argument("--weights", required=True)
    p.add_argument("--json", default=None)
    p.add_argument("opts", nargs=argparse.REMAINDER, default=[])
    return exit_on_user_error(compare, p.parse_args(argv))


if __name__ == "__main__":
    main()
