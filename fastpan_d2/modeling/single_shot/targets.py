"""Training targets and losses of the semantic and instance-centre branches.

Coordinates: pixel (row y, column x) has its centre at (x + 0.5, y + 0.5); boxes are XYXY in the
same continuous frame (the mapper's ``gt_boxes`` come from ``BitMasks.get_bounding_boxes``, whose
x1/y1 are one past the last pixel), so a one-pixel instance has offset 0 on its pixel.
"""
from typing import Tuple

import torch
from torch.nn import functional as F


def pixel_centers(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(2, H, W): the (x, y) centre of every pixel."""
    ys = torch.arange(height, device=device, dtype=dtype) + 0.5
    xs = torch.arange(width, device=device, dtype=dtype) + 0.5
    return torch.stack([xs[None].expand(height, width), ys[:, None].expand(height, width)])


def center_offset_targets(masks: torch.Tensor, boxes: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Offset from each thing pixel to the centre of its instance's box (Sec. III-B).

    Args:
        masks: (N, H, W) bool, non-overlapping instance masks (panoptic ground truth).
        boxes: (N, 4) XYXY boxes of the instances.
    Returns:
        offsets (2, H, W) float (dx, dy) in pixels, 0 off things; valid (H, W) bool = thing pixels.
    """
    N, H, W = masks.shape
    valid = masks.any(dim=0) if N else torch.zeros((H, W), dtype=torch.bool, device=masks.device)
    if N == 0:
        return torch.zeros((2, H, W), device=masks.device), valid
    centers = ((boxes[:, :2] + boxes[:, 2:]) / 2).float()  # (N, 2)
    owner = masks.to(torch.uint8).argmax(dim=0)  # (H, W) the (only) instance covering the pixel
    offsets = centers[owner].permute(2, 0, 1) - pixel_centers(H, W, masks.device)
    return offsets * valid, valid


def batch_center_targets(gt_instances, padded_size: Tuple[int, int]):
    """Per-image ``center_offset_targets`` padded to ``padded_size``: (N, 2, H, W), (N, H, W)."""
    H, W = padded_size
    offsets, valids = [], []
    for inst in gt_instances:
        h, w = inst.image_size
        masks = inst.gt_masks.tensor if hasattr(inst.gt_masks, "tensor") else inst.gt_masks
        off, val = center_offset_targets(masks[:, :h, :w], inst.gt_boxes.tensor)
        offsets.append(F.pad(off, (0, W - w, 0, H - h)))
        valids.append(F.pad(val, (0, W - w, 0, H - h)))
    return torch.stack(offsets), torch.stack(valids)


def center_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """L1 per pixel (|dx| + |dy|), averaged over the thing pixels of the batch (0 if none).

    pred, target: (N, 2, H, W); valid: (N, H, W) bool.
    """
    err = (pred - target).abs().sum(dim=1)  # (N, H, W)
    return (err * valid).sum() / valid.sum().clamp(min=1)
