"""Per-image targets of YOSO's set prediction loss, from the mapper's panoptic fields."""
import torch
import torch.nn.functional as F

__all__ = ["panoptic_targets"]


def panoptic_targets(pan_seg, segments_info, pad_size=None, device=None):
    """One target per non-crowd segment, things and stuff alike.

    pan_seg: (H, W) long segment ids; segments_info: the mapper's list of dicts (``id``,
    contiguous ``category_id``, optional ``iscrowd``); pad_size: (Hp, Wp) >= (H, W) of the padded
    batch (masks are zero-padded to it). Returns {"labels": (K,) long contiguous ids,
    "masks": (K, Hp, Wp) bool}; segments with no pixel left after augmentation are dropped.
    """
    device = device if device is not None else pan_seg.device
    pan_seg = pan_seg.to(device)
    segs = [s for s in segments_info if not s.get("iscrowd", 0)]
    ids = torch.as_tensor([s["id"] for s in segs], dtype=torch.long, device=device)
    labels = torch.as_tensor([s["category_id"] for s in segs], dtype=torch.long, device=device)
    masks = pan_seg[None] == ids[:, None, None]
    keep = masks.flatten(1).any(1)
    masks, labels = masks[keep], labels[keep]
    if pad_size is not None:
        H, W = pan_seg.shape
        masks = F.pad(masks, (0, pad_size[1] - W, 0, pad_size[0] - H))
    return {"labels": labels, "masks": masks}
