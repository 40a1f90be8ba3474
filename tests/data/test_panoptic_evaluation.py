"""COCOPanopticEvaluator on fastpan_shapes_val: ground truth as predictions gives PQ 100, and a
hand-damaged prediction gives the PQ computed by hand here."""
from collections import defaultdict

import cv2
import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.evaluation import COCOPanopticEvaluator


def gt_prediction(d):
    """The ground truth of a dataset dict as a model output (detectron2's panoptic format)."""
    rgb = cv2.imread(d["pan_seg_file_name"])[..., ::-1].astype(np.int64)
    seg = rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]
    infos = [
        {"id": s["id"], "category_id": s["category_id"], "isthing": s["isthing"], "score": 1.0}
        for s in d["segments_info"]
    ]
    return seg, infos


def evaluate(dicts, outputs):
    ev = COCOPanopticEvaluator("fastpan_shapes_val")
    ev.reset()
    for d, (seg, infos) in zip(dicts, outputs):
        inp = {"file_name": d["file_name"], "image_id": d["image_id"]}
        ev.process([inp], [{"panoptic_seg": (torch.as_tensor(seg, dtype=torch.int32), infos)}])
    return ev.evaluate()["panoptic_seg"]


@pytest.fixture
def val_dicts(synthetic_small):
    # the val set is generated in this process, after the evaluator's paths were registered
    return DatasetCatalog.get("fastpan_shapes_val")


def test_ground_truth_gives_pq_100(val_dicts):
    res = evaluate(val_dicts, [gt_prediction(d) for d in val_dicts])
    for k in ("PQ", "SQ", "RQ", "PQ_th", "PQ_st"):
        assert res[k] == pytest.approx(100.0), k


def test_hand_damaged_prediction(val_dicts):
    outputs = [gt_prediction(d) for d in val_dicts]
    # Per category (contiguous id): TP IoU sum, TP, FP, FN of a perfect prediction.
    tally = defaultdict(lambda: [0.0, 0, 0, 0])
    for d in val_dicts:
        for s in d["segments_info"]:
            t = tally[s["category_id"]]
            t[0] += 1.0
            t[1] += 1

    def tp_to_fn(cat):
        tally[cat][0] -= 1.0
        tally[cat][1] -= 1
        tally[cat][3] += 1

    # (1) image 0: drop a thing (its pixels become void) -> that GT segment is a false negative
    seg, infos = outputs[0]
    drop = next(s for s in infos if s["isthing"])
    seg[seg == drop["id"]] = 0
    outputs[0] = (seg, [s for s in infos if s["id"] != drop["id"]])
    tp_to_fn(drop["category_id"])

    # (2) image 1: relabel a stuff segment to a stuff class absent from that image
    #     -> FN for its true class, FP for the new class
    seg, infos = outputs[1]
    st = next(s for s in infos if not s["isthing"])
    present = {s["category_id"] for s in infos}
    new_cat = next(c for c in (5, 6, 7, 8) if c not in present)
    st["category_id"] = new_cat
    tp_to_fn(next(s for s in val_dicts[1]["segments_info"] if s["id"] == st["id"])["category_id"])
    tally[new_cat][2] += 1

    # (3) merge two things of the same class (different areas) into one predicted segment:
    #     the merged segment matches the larger one (IoU = L / (L + S) > 0.5), the smaller is missed
    for k in range(2, len(val_dicts)):
        seg, infos = outputs[k]
        by_cat = defaultdict(list)
        for s in infos:
            if s["isthing"]:
                by_cat[s["category_id"]].append(s)
        areas = {s["id"]: int((seg == s["id"]).sum()) for s in infos}
        pair = next(
            ((a, b) for v in by_cat.values() for a in v for b in v if areas[a["id"]] > areas[b["id"]]), None
        )
        if pair:
            break
    assert pair, "the val set has no image with two things of one class"
    big, small = pair
    seg[seg == small["id"]] = big["id"]
    outputs[k] = (seg, [s for s in infos if s["id"] != small["id"]])
    c = big["category_id"]
    L, S = areas[big["id"]], areas[small["id"]]
    tally[c][0] += L / (L + S) - 1.0  # the big one is still a TP, now with IoU L/(L+S)
    tp_to_fn(c)  # the small one is missed

    def pq(cats):
        vals = []
        for cat in cats:
            iou, tp, fp, fn = tally[cat]
            if tp + fp + fn:
                vals.append(iou / (tp + 0.5 * fp + 0.5 * fn))
        return 100 * np.mean(vals)

    expected_all, expected_th, expected_st = pq(range(9)), pq(range(5)), pq(range(5, 9))
    assert expected_all < 99  # the damage is visible in PQ
    res = evaluate(val_dicts, outputs)
    assert res["PQ"] == pytest.approx(expected_all, abs=1e-6)
    assert res["PQ_th"] == pytest.approx(expected_th, abs=1e-6)
    assert res["PQ_st"] == pytest.approx(expected_st, abs=1e-6)
