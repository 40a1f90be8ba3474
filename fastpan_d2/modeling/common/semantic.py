"""Per-pixel semantic targets and loss shared by the networks with a semantic output
(Single-Shot's semantic branch, LPSNet's semantic head, YOSO's training-only auxiliary semantic
loss).

Targets are the mapper's ``sem_seg`` (contiguous ids over things and stuff, the ignore label on
void, crowd and padding)."""
from typing import List

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["padded_semantic_targets", "semantic_loss", "AuxiliarySemanticHead"]


def padded_semantic_targets(batched_inputs: List[dict], padded_size, ignore_value: int, device) -> torch.Tensor:
    """(N, H, W) long: each input's ``sem_seg`` at the top left, padded to ``padded_size`` with
    ``ignore_value``."""
    H, W = padded_size
    out = []
    for x in batched_inputs:
        t = x["sem_seg"].to(device)
        out.append(F.pad(t, (0, W - t.shape[1], 0, H - t.shape[0]), value=ignore_value))
    return torch.stack(out)


def semantic_loss(logits: torch.Tensor, target: torch.Tensor, ignore_value: int = 255) -> torch.Tensor:
    """Pixel-wise cross-entropy of logits (N, C, h, w), averaged over labelled pixels.

    ``target`` (N, H, W) is nearest-downsampled to (h, w) when its size differs. With no labelled
    pixel the loss is 0 (not NaN) and still part of the graph."""
    if target.shape[-2:] != logits.shape[-2:]:
        target = F.interpolate(target[:, None].float(), size=logits.shape[-2:], mode="nearest")[:, 0].long()
    loss = F.cross_entropy(logits, target, reduction="sum", ignore_index=ignore_value)
    return loss / (target != ignore_value).sum().clamp(min=1)


class AuxiliarySemanticHead(nn.Module):
    """Training-only per-pixel classifier: a 1x1 conv from a feature map to all classes, trained
    with ``semantic_loss``. Not in any of the papers; it gives a from-scratch backbone a dense
    class signal (YOSO's ``AUX_SEMANTIC_WEIGHT``) and is not run at inference."""

    def __init__(self, in_channels: int, num_classes: int, loss_weight: float, ignore_value: int = 255):
        super().__init__()
        self.predictor = nn.Conv2d(in_channels, num_classes, 1)
        self.loss_weight = loss_weight
        self.ignore_value = ignore_value

    def forward(self, features: torch.Tensor, batched_inputs: List[dict], padded_size) -> torch.Tensor:
        """The weighted loss of ``features`` (N, C, H/s, W/s) of images padded to ``padded_size``."""
        target = padded_semantic_targets(batched_inputs, padded_size, self.ignore_value, features.device)
        return self.loss_weight * semantic_loss(self.predictor(features), target, self.ignore_value)
