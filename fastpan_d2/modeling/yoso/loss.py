"""YOSO's set prediction loss: Hungarian matching + classification, mask BCE and dice on points.

Each stage's n predictions (class logits over l + 1, last = no object; mask logits at 1/4 scale)
are matched one-to-one to the image's ground-truth segments (things and stuff alike) by
``scipy.optimize.linear_sum_assignment`` on

    C = w_cls * (-p[target class]) + w_mask * BCE + w_dice * dice,

BCE and dice computed on ``num_points`` points sampled uniformly at random (the same points
for all predictions and targets of an image). Losses, at every stage:

* classification: cross-entropy over all n predictions, unmatched ones -> no object, whose class
  weight is ``no_object_weight``;
* mask BCE and dice on the matched pairs, on ``num_points`` points per mask chosen by importance
  sampling (``oversample_ratio`` * P random candidates, the ``importance_sample_ratio`` * P most
  uncertain ones, |logit| smallest, plus random ones), normalised by the number of target masks
  in the batch (averaged over workers).

Masks are compared in normalised image coordinates, so predictions at 1/4 scale and targets at
full (padded) scale need no resizing.
"""
import torch
import torch.nn.functional as F
from detectron2.utils import comm
from scipy.optimize import linear_sum_assignment
from torch import nn

__all__ = [
    "point_sample",
    "sample_uncertain_points",
    "pairwise_bce_cost",
    "pairwise_dice_cost",
    "dice_loss",
    "HungarianMatcher",
    "SetCriterion",
]


def point_sample(inputs, coords):
    """inputs (N, C, H, W), coords (N, P, 2) as (x, y) in [0, 1] -> (N, C, P), bilinear."""
    grid = (2.0 * coords - 1.0).unsqueeze(2)  # (N, P, 1, 2)
    return F.grid_sample(inputs, grid, mode="bilinear", padding_mode="border", align_corners=False).squeeze(3)


def sample_uncertain_points(logits, num_points, oversample_ratio, importance_sample_ratio):
    """logits (N, 1, H, W) -> coords (N, num_points, 2): the most uncertain (|logit| smallest) of
    oversample_ratio * num_points random candidates, topped up with uniform random points."""
    N = logits.shape[0]
    num_sampled = int(num_points * oversample_ratio)
    cand = torch.rand(N, num_sampled, 2, device=logits.device, dtype=logits.dtype)
    uncertainty = -point_sample(logits, cand).abs().squeeze(1)  # (N, num_sampled)
    num_uncertain = int(importance_sample_ratio * num_points)
    idx = uncertainty.topk(num_uncertain, dim=1).indices
    coords = torch.gather(cand, 1, idx.unsqueeze(-1).expand(-1, -1, 2))
    num_random = num_points - num_uncertain
    if num_random > 0:
        coords = torch.cat([coords, torch.rand(N, num_random, 2, device=logits.device, dtype=logits.dtype)], 1)
    return coords


def pairwise_bce_cost(pred_logits, targets):
    """pred (n, P) logits, targets (K, P) in {0, 1} -> (n, K) mean BCE of every pair."""
    P = pred_logits.shape[1]
    pos = F.binary_cross_entropy_with_logits(pred_logits, torch.ones_like(pred_logits), reduction="none")
    neg = F.binary_cross_entropy_with_logits(pred_logits, torch.zeros_like(pred_logits), reduction="none")
    return (pos @ targets.T + neg @ (1 - targets).T) / P


def pairwise_dice_cost(pred_logits, targets):
    """pred (n, P) logits, targets (K, P) -> (n, K) dice loss 1 - (2|X∩Y| + 1) / (|X| + |Y| + 1)."""
    p = pred_logits.sigmoid()
    num = 2 * p @ targets.T
    den = p.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (num + 1) / (den + 1)


def dice_loss(pred_logits, targets):
    """Matched pairs: pred (M, P) logits, targets (M, P) -> (M,) dice losses."""
    p = pred_logits.sigmoid()
    return 1 - (2 * (p * targets).sum(-1) + 1) / (p.sum(-1) + targets.sum(-1) + 1)


class HungarianMatcher(nn.Module):
    def __init__(self, cost_class=2.0, cost_mask=5.0, cost_dice=5.0, num_points=12544):
        super().__init__()
        self.cost_class, self.cost_mask, self.cost_dice = cost_class, cost_mask, cost_dice
        self.num_points = num_points

    @torch.no_grad()
    def cost_matrix(self, cls_logits, mask_logits, tgt_labels, tgt_masks):
        """One image: cls (n, l+1), masks (n, h, w), labels (K,), target masks (K, H, W) -> (n, K)."""
        prob = cls_logits.float().softmax(-1)
        cost = -self.cost_class * prob[:, tgt_labels]
        coords = torch.rand(1, self.num_points, 2, device=mask_logits.device)
        pred = point_sample(mask_logits[None].float(), coords)[0]  # (n, P)
        tgt = point_sample(tgt_masks[None].float(), coords)[0]  # (K, P)
        return cost + self.cost_mask * pairwise_bce_cost(pred, tgt) + self.cost_dice * pairwise_dice_cost(pred, tgt)

    @torch.no_grad()
    def forward(self, cls_logits, mask_logits, targets):
        """Batched outputs + list of {"labels", "masks"} -> list of (pred_idx, tgt_idx) long tensors."""
        indices = []
        for b, tgt in enumerate(targets):
            if len(tgt["labels"]) == 0:
                empty = torch.zeros(0, dtype=torch.long)
                indices.append((empty, empty))
                continue
            c = self.cost_matrix(cls_logits[b], mask_logits[b], tgt["labels"], tgt["masks"])
            i, j = linear_sum_assignment(c.cpu())
            indices.append((torch.as_tensor(i, dtype=torch.long), torch.as_tensor(j, dtype=torch.long)))
        return indices


class SetCriterion(nn.Module):
    def __init__(self, num_classes, matcher, class_weight=2.0, mask_weight=5.0, dice_weight=5.0,
                 no_object_weight=0.1, num_points=12544, oversample_ratio=3.0, importance_sample_ratio=0.75):
        super().__init__()
        self.num_classes = num_classes
        self.matcher = matcher
        self.weights = {"loss_ce": class_weight, "loss_mask": mask_weight, "loss_dice": dice_weight}
        empty_weight = torch.ones(num_classes + 1)
        empty_weight[-1] = no_object_weight
        self.register_buffer("empty_weight", empty_weight, persistent=False)
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio

    def num_masks(self, targets, device):
        n = torch.as_tensor([float(sum(len(t["labels"]) for t in targets))], device=device)
        if comm.get_world_size() > 1:
            torch.distributed.all_reduce(n)
        return (n / comm.get_world_size()).clamp(min=1.0).item()

    def stage_losses(self, cls_logits, mask_logits, targets, indices, num_masks):
        B, n = cls_logits.shape[:2]
        batch_idx = torch.cat([torch.full_like(p, b) for b, (p, _) in enumerate(indices)]).to(cls_logits.device)
        pred_idx = torch.cat([p for p, _ in indices]).to(cls_logits.device)
        target_classes = torch.full((B, n), self.num_classes, dtype=torch.long, device=cls_logits.device)
        if len(pred_idx):
            target_classes[batch_idx, pred_idx] = torch.cat(
                [t["labels"][j.to(t["labels"].device)] for t, (_, j) in zip(targets, indices)]
            )
        loss_ce = F.cross_entropy(cls_logits.transpose(1, 2).float(), target_classes, self.empty_weight)

        src = mask_logits[batch_idx, pred_idx][:, None]  # (M, 1, h, w)
        if len(pred_idx) == 0:
            zero = src.sum() * 0.0 + mask_logits.sum() * 0.0
            return {"loss_ce": loss_ce, "loss_mask": zero, "loss_dice": zero}
        tgt = torch.cat([t["masks"][j.to(t["masks"].device)] for t, (_, j) in zip(targets, indices)])
        tgt = tgt[:, None].to(src.dtype)
        with torch.no_grad():
            coords = sample_uncertain_points(
                src.detach(), self.num_points, self.oversample_ratio, self.importance_sample_ratio
            )
            point_labels = point_sample(tgt, coords).squeeze(1)
        point_logits = point_sample(src, coords).squeeze(1)
        loss_mask = F.binary_cross_entropy_with_logits(point_logits, point_labels, reduction="none").mean(1)
        return {
            "loss_ce": loss_ce,
            "loss_mask": loss_mask.sum() / num_masks,
            "loss_dice": dice_loss(point_logits, point_labels).sum() / num_masks,
        }

    def forward(self, outputs, targets):
        """outputs: list over stages of (cls logits, mask logits); targets: list of dicts with
        "labels" (K,) contiguous ids and "masks" (K, H, W) bool at the padded input size."""
        num_masks = self.num_masks(targets, outputs[-1][0].device)
        losses = {}
        for s, (cls_logits, mask_logits) in enumerate(outputs):
            indices = self.matcher(cls_logits, mask_logits, targets)
            for k, v in self.stage_losses(cls_logits, mask_logits, targets, indices, num_masks).items():
                losses[f"{k}_s{s}"] = v * self.weights[k]
        return losses
