"""EPSNet's training targets and losses: L = λc Lc + λb Lb + λm Lm + λs Ls.

* Anchors are matched to GT boxes with detectron2's ``Matcher`` (IoU >= 0.5 positive, < 0.4
  negative, between ignored; every GT's best anchor is positive).
* Lc: sigmoid focal loss over the N_thing classes, summed, divided by the number of positives.
* Lb: smooth-L1 on ``Box2BoxTransform`` deltas of the positives, divided by the number of positives.
* Lm: for a positive anchor with GT g, m = sigmoid(P · c) at the prototypes' resolution (1/4);
  BCE against g's mask inside g's box only, summed and divided by g's box area (in prototype
  pixels); averaged over the positives that get a mask loss (at most ``masks_to_train`` per image).
* Ls: cross-entropy of the semantic logits (upsampled to the input size) against the stuff
  classes + 'other' (every thing pixel), ignoring ``ignore_value``.
"""
from typing import List

import torch
from detectron2.structures import Boxes, Instances, pairwise_iou
from fvcore.nn import sigmoid_focal_loss_jit, smooth_l1_loss
from torch.nn import functional as F


@torch.no_grad()
def match_anchors(anchors: Boxes, gt_instances: List[Instances], matcher):
    """-> matched_idxs (N, A) long (GT index, 0 where no GT), labels (N, A): 1 positive,
    0 negative, -1 ignored."""
    idxs, labels = [], []
    a = len(anchors)
    for inst in gt_instances:
        if len(inst) == 0:
            idxs.append(torch.zeros(a, dtype=torch.long, device=anchors.device))
            labels.append(torch.zeros(a, dtype=torch.int8, device=anchors.device))
            continue
        i, lab = matcher(pairwise_iou(inst.gt_boxes, anchors))
        idxs.append(i)
        labels.append(lab)
    return torch.stack(idxs), torch.stack(labels)


def downsample_masks(masks: torch.Tensor, padded_size, stride: int):
    """(G, h, w) bool at input scale -> (G, H/stride, W/stride) float {0, 1} (area-averaged, >= 0.5)
    on the padded canvas."""
    g, h, w = masks.shape
    canvas = masks.new_zeros((g, padded_size[0], padded_size[1]), dtype=torch.float32)
    canvas[:, :h, :w] = masks.float()
    if stride > 1:
        canvas = F.avg_pool2d(canvas[:, None], stride, stride)[:, 0]
    return (canvas >= 0.5).float()


def box_crop_masks(boxes: torch.Tensor, height: int, width: int, stride: float):
    """(n, 4) XYXY boxes at input scale -> (n, height, width) bool: the grid cells (of size
    ``stride``) whose centres lie inside the box."""
    ys = (torch.arange(height, device=boxes.device, dtype=boxes.dtype) + 0.5) * stride
    xs = (torch.arange(width, device=boxes.device, dtype=boxes.dtype) + 0.5) * stride
    in_x = (xs[None, :] >= boxes[:, 0:1]) & (xs[None, :] < boxes[:, 2:3])  # (n, W)
    in_y = (ys[None, :] >= boxes[:, 1:2]) & (ys[None, :] < boxes[:, 3:4])  # (n, H)
    return in_y[:, :, None] & in_x[:, None, :]


def mask_loss(protos, coefs, gt_masks_small, gt_boxes, proto_stride: float):
    """Sum over n positives of BCE(sigmoid(P·c), gt) inside the GT box / GT box area.

    protos (k, H, W); coefs (n, k); gt_masks_small (n, H, W) {0, 1}; gt_boxes (n, 4) at input
    scale. Returns a scalar (sum, not mean)."""
    if coefs.shape[0] == 0:
        return protos.sum() * 0.0
    logits = torch.einsum("nk,khw->nhw", coefs, protos)
    bce = F.binary_cross_entropy_with_logits(logits, gt_masks_small, reduction="none")
    crop = box_crop_masks(gt_boxes, protos.shape[1], protos.shape[2], proto_stride)
    area = ((gt_boxes[:, 2] - gt_boxes[:, 0]) * (gt_boxes[:, 3] - gt_boxes[:, 1]) / proto_stride**2).clamp(min=1.0)
    return ((bce * crop).sum(dim=(1, 2)) / area).sum()


def semantic_targets(sem_seg: torch.Tensor, stuff_lut: torch.Tensor, ignore_value: int):
    """Contiguous ids -> semantic-head classes: stuff index, 'other' (= N_stuff) for things."""
    valid = sem_seg != ignore_value
    out = torch.full_like(sem_seg, ignore_value)
    out[valid] = stuff_lut[sem_seg[valid]]
    return out


def stuff_lookup(categories, device=None):
    """Long tensor [num_classes]: stuff index of a contiguous id, N_stuff ('other') for things."""
    lut = categories.contiguous_to_stuff_index(device)
    lut[lut < 0] = categories.num_stuff
    return lut


def epsnet_losses(*, anchors, matched_idxs, anchor_labels, pred_cls, pred_deltas, pred_coefs, protos,
                  sem_logits, gt_instances, sem_targets, box2box, num_classes, padded_size,
                  focal_alpha=0.25, focal_gamma=2.0, smooth_l1_beta=1.0, masks_to_train=100, ignore_value=255):
    """Unweighted losses {"loss_cls", "loss_box", "loss_mask", "loss_sem"}.

    anchors (A, 4); matched_idxs / anchor_labels (N, A); pred_cls (N, A, C); pred_deltas (N, A, 4);
    pred_coefs (N, A, k); protos (N, k, Hp, Wp); sem_logits (N, S+1, h, w) at any stride;
    sem_targets (N, H, W) at the padded input size."""
    pos = anchor_labels == 1
    valid = anchor_labels >= 0
    num_pos = max(pos.sum().item(), 1)

    cls_t = torch.zeros_like(pred_cls)
    gt_cls = torch.stack(
        [inst.gt_classes[i] if len(inst) else torch.zeros_like(i) for inst, i in zip(gt_instances, matched_idxs)]
    )
    cls_t[pos, gt_cls[pos]] = 1.0
    loss_cls = sigmoid_focal_loss_jit(
        pred_cls[valid], cls_t[valid], alpha=focal_alpha, gamma=focal_gamma, reduction="sum"
    ) / num_pos

    gt_boxes = torch.stack(
        [inst.gt_boxes.tensor[i] if len(inst) else anchors.new_zeros((len(i), 4))
         for inst, i in zip(gt_instances, matched_idxs)]
    )  # (N, A, 4)
    anchors_n = anchors[None].expand_as(gt_boxes)
    target_deltas = box2box.get_deltas(anchors_n[pos], gt_boxes[pos])
    loss_box = smooth_l1_loss(pred_deltas[pos], target_deltas, smooth_l1_beta, reduction="sum") / num_pos

    proto_stride = padded_size[0] / protos.shape[2]
    total, count = protos.sum() * 0.0, 0
    for n, inst in enumerate(gt_instances):
        p = pos[n].nonzero()[:, 0]
        if p.numel() == 0:
            continue
        if p.numel() > masks_to_train:
            p = p[torch.randperm(p.numel(), device=p.device)[:masks_to_train]]
        g = matched_idxs[n, p]
        small = downsample_masks(inst.gt_masks.tensor, padded_size, int(round(proto_stride)))
        total = total + mask_loss(protos[n], pred_coefs[n, p], small[g], inst.gt_boxes.tensor[g], proto_stride)
        count += p.numel()
    loss_mask = total / max(count, 1)

    logits = F.interpolate(sem_logits, size=sem_targets.shape[-2:], mode="bilinear", align_corners=False)
    ce = F.cross_entropy(logits, sem_targets, ignore_index=ignore_value, reduction="sum")
    loss_sem = ce / max((sem_targets != ignore_value).sum().item(), 1)
    return {"loss_cls": loss_cls, "loss_box": loss_box, "loss_mask": loss_mask, "loss_sem": loss_sem}
