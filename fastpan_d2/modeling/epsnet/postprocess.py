"""EPSNet inference: NMS, mask assembly, resampling to the output size, panoptic merge.

Everything is batched tensor code (no loop over pixels, segments or classes):

* ``fast_nms``: YOLACT's Fast NMS: per class the top-k boxes by score, their IoU matrix, upper
  triangle; a box is kept if no higher-scored box of its class overlaps it more than the
  threshold (already-suppressed boxes may still suppress, as YOLACT defines it).
* ``standard_nms``: score threshold, top-k, detectron2's ``batched_nms``.
* ``panoptic_merge``: the heuristic of Kirillov et al. that the paper uses: instances painted
  by score, an instance dropped if more than ``overlap_thresh`` of it is already taken,
  instances win over stuff, 'other' and stuff smaller than ``stuff_area_thresh`` become void.
"""
from typing import List

import torch
from detectron2.layers import batched_nms

from ..common.resample import resample_to_output


def _box_area(b):
    return (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)


def batched_pairwise_iou(boxes: torch.Tensor):
    """(C, K, 4) -> (C, K, K) IoU of every pair inside each group."""
    lt = torch.maximum(boxes[:, :, None, :2], boxes[:, None, :, :2])
    rb = torch.minimum(boxes[:, :, None, 2:], boxes[:, None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    area = _box_area(boxes)
    union = area[:, :, None] + area[:, None, :] - inter
    return inter / union.clamp(min=1e-6)


def fast_nms(boxes, scores, iou_thresh=0.5, top_k=200, score_thresh=0.05, max_det=100):
    """boxes (A, 4), scores (A, C) -> (keep anchor indices, scores, classes), score-descending.

    Only classes with a candidate above ``score_thresh`` and only as many per class as the fullest
    of them has (at most ``top_k``) enter the IoU matrices: boxes below the threshold can only
    suppress boxes below it too, so the result is the same as with all top-k."""
    above = scores > score_thresh
    per_class = above.sum(0)
    classes_in = (per_class > 0).nonzero()[:, 0]
    k = min(top_k, int(per_class.max())) if scores.numel() else 0
    if k == 0:
        empty = torch.zeros(0, dtype=torch.long, device=scores.device)
        return empty, scores.new_zeros(0), empty
    s, idx = scores[:, classes_in].t().topk(k, dim=1)  # (C', K), sorted descending
    iou = batched_pairwise_iou(boxes[idx]).triu_(diagonal=1)
    iou_max = iou.max(dim=1).values  # (C', K): max IoU with a higher-scored box of the class
    keep = (iou_max <= iou_thresh) & (s > score_thresh)
    classes = classes_in[:, None].expand_as(keep)[keep]
    s, idx = s[keep], idx[keep]
    s, order = s.sort(descending=True)
    order = order[:max_det]
    return idx[order], s[:max_det], classes[order]


def standard_nms(boxes, scores, iou_thresh=0.5, top_k=1000, score_thresh=0.05, max_det=100):
    """Per-class NMS (``batched_nms``) on the top-k (anchor, class) pairs above the threshold."""
    c = scores.shape[1]
    flat = scores.flatten()
    cand = (flat > score_thresh).nonzero()[:, 0]
    s = flat[cand]
    if s.numel() > top_k:
        s, o = s.topk(top_k)
        cand = cand[o]
    idx, classes = cand // c, cand % c
    keep = batched_nms(boxes[idx], s, classes, iou_thresh)[:max_det]
    return idx[keep], s[keep], classes[keep]


def paste_masks(mask_logits, boxes, stride, image_size, out_size):
    """mask_logits (D, h, w) on the canvas, boxes (D, 4) at output scale -> (D, *out_size) bool:
    sigmoid(P·c) > 0.5, cropped by the box."""
    if mask_logits.shape[0] == 0:
        return torch.zeros((0, *out_size), dtype=torch.bool, device=mask_logits.device)
    m = resample_to_output(mask_logits, stride, image_size, out_size) > 0
    oh, ow = out_size
    ys = torch.arange(oh, device=boxes.device, dtype=boxes.dtype) + 0.5
    xs = torch.arange(ow, device=boxes.device, dtype=boxes.dtype) + 0.5
    in_y = (ys[None] >= boxes[:, 1:2]) & (ys[None] < boxes[:, 3:4])
    in_x = (xs[None] >= boxes[:, 0:1]) & (xs[None] < boxes[:, 2:3])
    return m & in_y[:, :, None] & in_x[:, None, :]


def first_owner(masks: torch.Tensor):
    """masks (D, H, W) bool -> (index of the first mask covering each pixel (0 where none), covered).

    max over D of (mask · (D - i)) instead of argmax: an elementwise max across the D slices, which
    is several times faster than an argmax reduction over the leading dimension."""
    d = masks.shape[0]
    if d == 0:
        z = torch.zeros(masks.shape[1:], dtype=torch.long, device=masks.device)
        return z, z.bool()
    dtype = torch.uint8 if d < 256 else torch.int32
    rank = torch.arange(d, 0, -1, device=masks.device, dtype=dtype)[:, None, None]
    best = (masks.to(dtype) * rank).amax(0)
    covered = best > 0
    return (d - best.long()).clamp(max=d - 1), covered


def panoptic_merge(masks, scores, thing_classes, stuff_classes, *, num_stuff, thing_ids: List[int],
                   stuff_ids: List[int], overlap_thresh=0.5, stuff_area_thresh=4096):
    """masks (D, H, W) bool of the detections sorted by score (descending), scores (D,),
    thing_classes (D,) thing index; stuff_classes (H, W): argmax of the semantic head
    (0..num_stuff-1 stuff index, num_stuff = 'other').

    -> (seg (H, W) int32, segments_info): instance ids 1..n in score order, then stuff."""
    device = stuff_classes.device
    d = masks.shape[0]
    seg = torch.zeros(stuff_classes.shape, dtype=torch.int32, device=device)
    n_inst = 0
    info = []
    if d > 0:
        # Pass 1: a pixel belongs to the highest-scored detection covering it (argmax returns the
        # first maximum); drop detections that keep too little of themselves.
        area = masks.flatten(1).sum(1)
        owner, covered = first_owner(masks)
        kept_area = torch.bincount(owner[covered], minlength=d)
        keep = (area > 0) & (kept_area.float() >= (1.0 - overlap_thresh) * area.float())
        if not bool(keep.all()):  # pass 2: the survivors take the dropped ones' pixels
            masks, scores, thing_classes = masks[keep], scores[keep], thing_classes[keep]
            owner, covered = first_owner(masks)
        n_inst = masks.shape[0]
        if n_inst:
            seg = torch.where(covered, owner.to(torch.int32) + 1, seg)
            cls_list, score_list = thing_classes.tolist(), scores.tolist()
            info = [
                {"id": i + 1, "category_id": int(thing_ids[c]), "isthing": True, "score": float(s)}
                for i, (c, s) in enumerate(zip(cls_list, score_list))
            ]
        free = ~covered if n_inst else torch.ones_like(stuff_classes, dtype=torch.bool)
    else:
        free = torch.ones_like(stuff_classes, dtype=torch.bool)
    region = free & (stuff_classes != num_stuff)
    areas = torch.bincount(stuff_classes[region], minlength=num_stuff + 1)[:num_stuff]
    keep_stuff = areas >= max(stuff_area_thresh, 1)
    lut = torch.zeros(num_stuff + 1, dtype=torch.int32, device=device)
    lut[:num_stuff] = torch.where(keep_stuff, n_inst + torch.cumsum(keep_stuff, 0).to(torch.int32), 0)
    seg = torch.where(region, lut[stuff_classes], seg)
    kept_cls = keep_stuff.nonzero()[:, 0]
    for j, (c, a) in enumerate(zip(kept_cls.tolist(), areas[kept_cls].tolist())):
        info.append({"id": n_inst + 1 + j, "category_id": int(stuff_ids[c]), "isthing": False, "area": int(a)})
    return seg, info
