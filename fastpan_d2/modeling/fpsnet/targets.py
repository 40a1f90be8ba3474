"""FPSNet's training targets (Sec. III-A3).

1. ``match_detections_to_gt``: each detection (attention mask) goes to at most one ground-truth
   thing and each thing to at most one detection, by box IoU > 0.5, highest IoU first (greedy).
2. ``panoptic_targets``: one label per pixel over the panoptic head's outputs:
   ``slot`` (0..N_att-1) for pixels of a thing matched to the mask in that slot,
   ``N_att + stuff index`` for stuff, ``N_att + N_stuff`` for thing pixels not matched to any
   mask and ``N_att + N_stuff + 1`` for unlabeled pixels; ``IGNORE`` (-1) only outside the image
   (batch padding).
"""
from typing import Optional

import torch
from detectron2.structures import Boxes, pairwise_iou
from torch import Tensor

IGNORE = -1


@torch.no_grad()
def match_detections_to_gt(
    det_boxes: Tensor,
    gt_boxes: Tensor,
    iou_thresh: float = 0.5,
    det_classes: Optional[Tensor] = None,
    gt_classes: Optional[Tensor] = None,
) -> Tensor:
    """One-to-one greedy matching, highest box IoU first, IoU > ``iou_thresh``.

    Args:
        det_boxes: (D, 4), gt_boxes: (G, 4), XYXY.
        det_classes, gt_classes: if both are given, only same-class pairs may match.

    Returns:
        (D,) long: the matched GT index of each detection, -1 if unmatched.

    Each round matches every pair that is the best for both its detection and its GT (the pair
    of highest IoU always is), so the rounds give the greedy result in few tensor steps. A tiny
    index-based tie-break makes all IoUs distinct, so every round matches at least one pair.
    """
    D, G = det_boxes.shape[0], gt_boxes.shape[0]
    det_to_gt = torch.full((D,), -1, dtype=torch.long, device=det_boxes.device)
    if D == 0 or G == 0:
        return det_to_gt
    iou = pairwise_iou(Boxes(det_boxes), Boxes(gt_boxes)).double()
    ok = iou > iou_thresh
    if det_classes is not None and gt_classes is not None:
        ok &= det_classes[:, None] == gt_classes[None, :]
    order = torch.arange(D * G, device=iou.device, dtype=torch.float64).view(D, G)
    score = torch.where(ok, iou + 1.0 - order * 1e-9, torch.zeros_like(iou))  # > 1 where allowed
    det_idx = torch.arange(D, device=iou.device)
    for _ in range(min(D, G)):
        best_val, best_gt = score.max(dim=1)  # per detection
        best_det = score.argmax(dim=0)  # per GT
        mutual = (best_val > 0) & (best_det[best_gt] == det_idx)
        if not bool(mutual.any()):
            break
        det_to_gt[mutual] = best_gt[mutual]
        score[mutual] = 0
        score[:, best_gt[mutual]] = 0
    return det_to_gt


def panoptic_targets(
    sem_seg: Tensor,
    gt_masks: Tensor,
    gt_slot: Tensor,
    stuff_index: Tensor,
    num_masks: int,
    ignore_label: int = 255,
) -> Tensor:
    """Per-pixel target of one image.

    Args:
        sem_seg: (H, W) long, contiguous category id per pixel, ``ignore_label`` = unlabeled.
        gt_masks: (G, H, W) bool, the non-crowd things (non-overlapping, as in panoptic GT).
        gt_slot: (G,) long, the attention-mask slot each thing is matched to, -1 if none.
        stuff_index: (num_classes,) long, stuff index of a contiguous id, -1 for things.
        num_masks: N_att.

    Returns:
        (H, W) long target (see module doc).
    """
    num_stuff = int((stuff_index >= 0).sum())
    unmatched, unlabeled = num_masks + num_stuff, num_masks + num_stuff + 1
    labeled = sem_seg != ignore_label
    cls = torch.where(labeled, sem_seg, torch.zeros_like(sem_seg))
    s = stuff_index[cls]
    target = torch.where(s >= 0, s + num_masks, torch.full_like(s, unmatched))
    target = torch.where(labeled, target, torch.full_like(s, unlabeled))
    if gt_masks.shape[0] > 0:
        gt_masks = gt_masks.to(device=sem_seg.device, dtype=torch.bool)
        on_thing = gt_masks.any(dim=0)
        which = gt_masks.to(torch.uint8).argmax(dim=0)  # index of the thing covering a pixel
        slot = torch.where(gt_slot >= 0, gt_slot, torch.full_like(gt_slot, unmatched))
        target = torch.where(on_thing, slot[which], target)
    return target
