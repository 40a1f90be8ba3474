"""YOSO's panoptic inference: MaskFormer-style merging as batched tensor ops.

1. ``select_queries``: class probabilities softmax(logits / temperature); a query is kept if its
   most probable class is not "no object" and that probability exceeds the object-mask threshold.
2. ``merge_panoptic`` (kept queries, masks at the output size): each pixel goes to the query with
   the highest score * mask probability; a query's segment is its pixels where it wins AND its mask
   probability >= 0.5; a query is dropped if that visible part is empty or smaller than
   ``overlap_threshold`` of its whole mask (prob >= 0.5); surviving queries of one stuff class are
   merged into one segment (union); thing queries are separate instances.
"""
import torch

__all__ = ["select_queries", "merge_panoptic"]


def select_queries(cls_logits, temperature=1.0, object_mask_threshold=0.8):
    """cls_logits (n, l+1) -> (keep index (K,), scores (K,), labels (K,), probs over l+1 (n, l+1))."""
    probs = (cls_logits / temperature).softmax(-1)
    scores, labels = probs.max(-1)
    num_classes = cls_logits.shape[-1] - 1
    keep = torch.nonzero((labels != num_classes) & (scores > object_mask_threshold)).squeeze(1)
    return keep, scores[keep], labels[keep], probs


def merge_panoptic(scores, labels, mask_probs, is_thing, overlap_threshold=0.8):
    """scores (K,), labels (K,) contiguous ids, mask_probs (K, H, W) in [0, 1], is_thing (l,) bool.

    Returns (seg (H, W) int32 with segment ids 1..S, 0 = void; segments_info list of dicts
    {"id", "category_id", "isthing", "score", "area"}). Stuff segments' score is the best score of
    the queries merged into them.
    """
    K, (H, W) = scores.shape[0], mask_probs.shape[-2:]
    device = mask_probs.device
    if K == 0:
        return torch.zeros((H, W), dtype=torch.int32, device=device), []
    # max(0).indices: ~3x faster than argmax(0) over the leading dim on CPU; same first-max ties
    winner = (scores[:, None, None] * mask_probs).max(0).indices  # (H, W)
    binary = mask_probs >= 0.5
    orig_area = binary.flatten(1).to(mask_probs.dtype).sum(1)  # float sum: faster than a bool sum
    # visible part of query k: pixels it wins where its own mask is on (no K x H x W one-hot)
    pixel_ok = binary.gather(0, winner[None])[0]  # (H, W)
    vis_area = torch.bincount(winner[pixel_ok], minlength=K)
    valid = (orig_area > 0) & (vis_area > 0) & (vis_area >= overlap_threshold * orig_area)

    thing = is_thing.to(device)[labels]
    # one key per thing query, one per stuff class (queries of a stuff class share a segment)
    key = torch.where(thing, torch.arange(K, device=device), K + labels)
    key = torch.where(valid, key, torch.full_like(key, -1))
    uniq, inv = torch.unique(key, return_inverse=True)
    has_void = bool(uniq.numel()) and bool(uniq[0] < 0)
    seg_of_query = inv + (0 if has_void else 1)  # void key (-1) -> 0, others 1..S
    seg_of_query = torch.where(valid, seg_of_query, torch.zeros_like(seg_of_query))
    S = uniq.numel() - int(has_void)

    seg = torch.where(pixel_ok, seg_of_query[winner], torch.zeros_like(winner)).to(torch.int32)

    # per-segment attributes, gathered with scatter ops
    seg_area = torch.zeros(S + 1, dtype=torch.long, device=device).index_add_(0, seg_of_query, vis_area)
    seg_score = torch.zeros(S + 1, dtype=scores.dtype, device=device).index_reduce_(
        0, seg_of_query, scores, "amax", include_self=False
    )
    seg_label = torch.zeros(S + 1, dtype=torch.long, device=device).index_reduce_(
        0, seg_of_query, labels, "amax", include_self=False
    )
    seg_thing = is_thing.to(device)[seg_label]
    area_l, score_l, label_l, thing_l = (t[1:].tolist() for t in (seg_area, seg_score, seg_label, seg_thing))
    segments_info = [
        {"id": i + 1, "category_id": int(c), "isthing": bool(th), "score": float(s), "area": int(a)}
        for i, (c, th, s, a) in enumerate(zip(label_l, thing_l, score_l, area_l))
    ]
    return seg, segments_info
