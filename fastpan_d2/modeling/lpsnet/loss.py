"""LPSNet's box and border-ness losses (Sec. 3.2), FCOS-style.

* Box: IoU (``-log IoU``, UnitBox as FCOS) or GIoU loss between the boxes
  ``(x - l, y - t, x + r, y + b)`` of prediction and target at the positive locations,
  weighted by the quality (border-ness) target and normalised by its sum, as FCOS weights
  its regression loss by the centre-ness target.
* Border-ness: binary cross-entropy on the predicted logit. On positives the target is Eq. 1;
  with ``on_negatives`` every other location has target 0 (LPSNet has no class branch, so this
  is what tells a location "no object of this level here"). Positives and negatives are each
  averaged, then summed, so the many negatives do not drown the positives.
"""
import torch
import torch.nn.functional as F
from fvcore.nn import giou_loss

__all__ = ["ltrb_to_boxes", "box_loss", "borderness_loss"]


def ltrb_to_boxes(locations, ltrb):
    """(L, 2) x, y and (L, 4) l, t, r, b -> (L, 4) XYXY boxes."""
    x, y = locations[:, 0], locations[:, 1]
    return torch.stack((x - ltrb[:, 0], y - ltrb[:, 1], x + ltrb[:, 2], y + ltrb[:, 3]), dim=1)


def box_loss(pred_ltrb, target_ltrb, weight, loss_type="giou"):
    """Weighted mean of the IoU/GIoU loss of (P, 4) distance predictions; 0 if no positive."""
    if pred_ltrb.numel() == 0 or float(weight.sum()) <= 0:
        return pred_ltrb.sum() * 0.0
    zero = torch.zeros_like(pred_ltrb[:, :2])
    pred = ltrb_to_boxes(zero, pred_ltrb)  # both boxes around the same location
    tgt = ltrb_to_boxes(zero, target_ltrb)
    if loss_type == "giou":
        losses = giou_loss(pred, tgt, reduction="none")
    elif loss_type == "iou":
        area_p = (pred_ltrb[:, 0] + pred_ltrb[:, 2]) * (pred_ltrb[:, 1] + pred_ltrb[:, 3])
        area_t = (target_ltrb[:, 0] + target_ltrb[:, 2]) * (target_ltrb[:, 1] + target_ltrb[:, 3])
        w = torch.minimum(pred_ltrb[:, 0], target_ltrb[:, 0]) + torch.minimum(pred_ltrb[:, 2], target_ltrb[:, 2])
        h = torch.minimum(pred_ltrb[:, 1], target_ltrb[:, 1]) + torch.minimum(pred_ltrb[:, 3], target_ltrb[:, 3])
        inter = w * h
        iou = (inter + 1.0) / (area_p + area_t - inter + 1.0)
        losses = -torch.log(iou)
    else:
        raise ValueError(f"Unknown BOX_LOSS_TYPE {loss_type!r}; expected 'iou' or 'giou'")
    return (losses * weight).sum() / weight.sum()


def borderness_loss(logits, target, positive, on_negatives=True):
    """BCE of (L,) logits against (L,) targets; mean over positives (+ mean over negatives)."""
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    pos = positive.float()
    loss = (bce * pos).sum() / pos.sum().clamp(min=1.0)
    if on_negatives:
        neg = 1.0 - pos
        loss = loss + (bce * neg).sum() / neg.sum().clamp(min=1.0)
    return loss
