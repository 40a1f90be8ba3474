"""The parameter-free panoptic head of Single-Shot Panoptic Segmentation (Sec. III-A to III-C).

Instance-aware logits: ``Y = [X_stuff ; X_things[c_1] cropped to b_1 ; ... ; X_things[c_D] cropped
to b_D]`` and the panoptic label of a pixel is ``argmax Y``. Pixels won by a crop belong to that
detection; everything else takes the best stuff class. All of it is batched tensor code over the
D detections: no loop over pixels or segments.

Same-class overlaps give identical crops (they copy the same slice X_c), so ``argmax`` cannot tell
them apart; the policy decides (Sec. III-B):

* ``highest_confidence``: the detection with the higher score wins;
* ``smallest_first``: the detection with the smaller box wins;
* ``closest_center``: the detection whose box centre is nearest (L2) to the pixel's predicted
  instance centre (pixel position + predicted offset) wins.

HC and SF are an ordering of the D crops: sorted by the policy's priority, a tie goes to the first
crop. CC takes, among the detections of the winning class whose box contains the pixel, the one
with the closest box centre. The implementation never stacks the D full-size crops: it takes the
best slice among the detected classes whose boxes cover a pixel, then resolves the policy only at
the thing pixels; ``test_single_shot_panoptic_head.py`` checks it against the literal stack.

Options (Table IV): ``unknown`` makes pixels that the semantic branch labels as a thing but that no
detection explains void instead of stuff; ``stuff_area_limit`` removes (voids) stuff segments with
fewer pixels.
"""
from typing import List, Optional

import torch
from detectron2.config import configurable
from torch.nn import functional as F

POLICIES = ("highest_confidence", "smallest_first", "closest_center")


def box_rows_cols(boxes: torch.Tensor, height: int, width: int):
    """(D, H) and (D, W) bool: the rows / columns whose pixel centres (x+.5, y+.5) lie in each box."""
    ys = torch.arange(height, device=boxes.device, dtype=boxes.dtype) + 0.5
    xs = torch.arange(width, device=boxes.device, dtype=boxes.dtype) + 0.5
    rows = (ys[None] >= boxes[:, 1:2]) & (ys[None] < boxes[:, 3:4])
    cols = (xs[None] >= boxes[:, 0:1]) & (xs[None] < boxes[:, 2:3])
    return rows, cols


def box_masks(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(D, H, W) bool: pixel (y, x) lies in box b when its centre (x+.5, y+.5) is inside b."""
    rows, cols = box_rows_cols(boxes, height, width)
    return rows[:, :, None] & cols[:, None, :]


def policy_order(policy: str, boxes: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Detection indices in decreasing priority (CC falls back to confidence for exact ties)."""
    if policy == "smallest_first":
        area = (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)
        return torch.sort(area, stable=True).indices
    if policy in ("highest_confidence", "closest_center"):
        return torch.sort(scores, descending=True, stable=True).indices
    raise ValueError(f"Unknown overlap policy {policy!r}; expected one of {POLICIES}")


def closest_center_assignment(
    candidates: torch.Tensor, boxes: torch.Tensor, centers: torch.Tensor
) -> torch.Tensor:
    """Index of the candidate box whose centre is nearest to each pixel's predicted centre.

    candidates: (D, *P) bool; boxes: (D, 4); centers: (2, *P) absolute (x, y) predicted centre
    of the instance each pixel belongs to (P: any pixel layout, e.g. (H, W) or a flat list).
    Pixels without candidates get index 0.
    """
    bc = ((boxes[:, :2] + boxes[:, 2:]) / 2).view(-1, 2, *([1] * (centers.dim() - 1)))  # (D, 2, 1..)
    dist = ((centers[None] - bc) ** 2).sum(dim=1)  # (D, *P)
    return dist.masked_fill(~candidates, float("inf")).argmin(dim=0)


def select_channels(x: torch.Tensor, ids: List[int]) -> torch.Tensor:
    """``x[ids]``; a view when the ids are a contiguous ascending range (COCO, Cityscapes, ...)."""
    if ids == list(range(ids[0], ids[0] + len(ids))):
        return x.narrow(0, ids[0], len(ids))
    return x.index_select(0, torch.as_tensor(ids, device=x.device))


class SingleShotPanopticHead:
    """Detections + semantic logits (+ instance centres) -> detectron2 panoptic output."""

    @configurable
    def __init__(
        self,
        *,
        thing_ids: List[int],
        stuff_ids: List[int],
        policy: str = "closest_center",
        score_thresh: float = 0.4,
        unknown: bool = True,
        stuff_area_limit: int = 4096,
    ):
        if policy not in POLICIES:
            raise ValueError(f"Unknown overlap policy {policy!r}; expected one of {POLICIES}")
        self.thing_ids = list(thing_ids)
        self.stuff_ids = list(stuff_ids)
        self.policy = policy
        self.score_thresh = score_thresh
        self.unknown = unknown
        self.stuff_area_limit = stuff_area_limit

    @classmethod
    def from_config(cls, cfg, categories):
        p = cfg.MODEL.SINGLE_SHOT.PANOPTIC
        return {
            "thing_ids": categories.thing_ids,
            "stuff_ids": categories.stuff_ids,
            "policy": p.OVERLAP_POLICY,
            "score_thresh": p.SCORE_THRESH,
            "unknown": p.UNKNOWN,
            "stuff_area_limit": p.STUFF_AREA_LIMIT,
        }

    @property
    def needs_centers(self):
        return self.policy == "closest_center"

    def __call__(
        self,
        sem_logits: torch.Tensor,
        boxes: torch.Tensor,
        scores: torch.Tensor,
        classes: torch.Tensor,
        centers: Optional[torch.Tensor] = None,
    ):
        """
        Args:
            sem_logits: (C, H, W) semantic logits over all classes (contiguous ids) at the output size.
            boxes: (D, 4) XYXY detections in output pixels; scores (D,); classes (D,) thing index.
            centers: (2, H, W) predicted instance centre (x, y) of each pixel, in output pixels;
                needed by the closest-centre policy.
        Returns:
            (seg int32 (H, W), segments_info) in detectron2's panoptic format (0 = void).
        """
        device = sem_logits.device
        _, H, W = sem_logits.shape
        kept = torch.nonzero(scores >= self.score_thresh).flatten()
        order = kept[policy_order(self.policy, boxes[kept], scores[kept])]  # indices into the input
        boxes, scores, classes = boxes[order], scores[order], classes[order].long()
        D = boxes.shape[0]

        if self.stuff_ids:
            stuff_val, stuff_arg = select_channels(sem_logits, self.stuff_ids).max(dim=0)
        else:
            stuff_val = sem_logits.new_full((H, W), float("-inf"))
            stuff_arg = torch.zeros((H, W), dtype=torch.long, device=device)
        void = torch.zeros((H, W), dtype=torch.bool, device=device)
        no_stuff = torch.full((1,), not self.stuff_ids, dtype=torch.bool, device=device)

        if D > 0:
            # Crops of one class copy the same slice X_c, so the best crop at a pixel is the best
            # slice among the detected classes whose boxes cover it (U <= D slices, not D).
            rows, cols = box_rows_cols(boxes, H, W)  # (D, H), (D, W)
            det_classes, det_group = torch.unique(classes, return_inverse=True)  # (U,), (D,)
            group = F.one_hot(det_group, len(det_classes)).t().to(sem_logits.dtype)  # (U, D)
            rows_g = group[:, None, :] * rows.t().to(sem_logits.dtype)[None]  # (U, H, D)
            covered = torch.matmul(rows_g, cols.to(sem_logits.dtype)) > 0  # (U, H, W): in a box of u
            thing_ids = torch.as_tensor(self.thing_ids, device=device)
            slices = sem_logits.index_select(0, thing_ids[det_classes]).masked_fill_(~covered, float("-inf"))
            thing_val, best_group = slices.max(dim=0)
            is_thing = thing_val > stuff_val
            # At the thing pixels: the winning class's boxes that contain the pixel (P, D); the
            # policy picks one of them.
            px = torch.nonzero(is_thing.reshape(-1)).flatten()
            py, pxx = px // W, px % W
            cand = rows.t()[py] & cols.t()[pxx] & (det_group[None] == best_group.reshape(-1)[px, None])
            if self.policy == "closest_center":
                if centers is None:
                    raise ValueError("The closest-center policy needs instance centre predictions")
                pick = closest_center_assignment(cand.t(), boxes, centers.reshape(2, -1)[:, px])
            else:
                pick = cand.to(torch.uint8).argmax(dim=1)  # first = highest priority (HC / SF)
            det = torch.zeros(H * W, dtype=torch.long, device=device).index_put_((px,), pick).view(H, W)
            det_area = torch.bincount(pick, minlength=D)
        else:
            is_thing = void
            det = torch.zeros((H, W), dtype=torch.long, device=device)
            det_area = torch.zeros(0, dtype=torch.long, device=device)

        if self.unknown and self.thing_ids:
            sem_thing = select_channels(sem_logits, self.thing_ids).amax(dim=0) > stuff_val
            void = sem_thing & ~is_thing
        stuff_px = ~is_thing & ~void
        num_stuff = len(self.stuff_ids)
        stuff_area = torch.bincount(stuff_arg[stuff_px], minlength=num_stuff)[:num_stuff]
        stuff_keep = stuff_area >= max(self.stuff_area_limit, 1)
        # Removed stuff (and, without stuff classes, every pixel no detection takes) is void.
        void = void | (stuff_px & ~torch.cat([stuff_keep, ~no_stuff])[stuff_arg])

        # Segment ids: kept detections 1..K in priority order, then the kept stuff classes.
        det_keep = det_area > 0
        det_id = torch.cumsum(det_keep.long(), 0) * det_keep
        num_things = int(det_keep.sum())
        stuff_id = (torch.cumsum(stuff_keep.long(), 0) + num_things) * stuff_keep
        stuff_id = torch.cat([stuff_id, stuff_id.new_zeros(1)])  # the extra entry serves no_stuff
        seg = torch.where(is_thing, det_id[det] if D > 0 else det, stuff_id[stuff_arg])
        seg = seg.masked_fill(void, 0).to(torch.int32)

        segments_info = []
        det_rows = torch.nonzero(det_keep).flatten()
        rows = zip(classes[det_rows].tolist(), scores[det_rows].tolist(), order[det_rows].tolist())
        for c, s, o in rows:
            segments_info.append(
                {"id": len(segments_info) + 1, "category_id": self.thing_ids[c], "isthing": True,
                 "score": float(s), "instance_id": o}
            )
        stuff_rows = torch.nonzero(stuff_keep).flatten()
        for j, a in zip(stuff_rows.tolist(), stuff_area[stuff_rows].tolist()):
            segments_info.append(
                {"id": len(segments_info) + 1, "category_id": self.stuff_ids[j], "isthing": False,
                 "area": int(a)}
            )
        return seg, segments_info
