"""LPSNet's parameter-free panoptic head (Sec. 3.4), in batched tensor code.

Boxes are pasted onto the semantic prediction from high to low confidence. A box of class C
owns the pixels inside it whose semantic class is C (its mask). A mask of which more than
``overlap_thresh`` (0.3) is already taken by earlier kept masks is dropped; otherwise it keeps
its untaken part. Pixels that several kept boxes of the same class claim go, by ``policy``:

* ``"borderness"`` (paper): to the box whose border-ness computed at the pixel (Eq. 1 with the
  pixel's distances to the box's sides) is closest to the border-ness the box was predicted with;
* ``"area"``: to the box with the smallest area;
* ``"confidence"``: to the most confident box (first come, first served).

Because a mask only contains pixels of its own class, two masks can only overlap if they have
the same class: every conflict is a same-class conflict. Pixels of a thing class that no kept
box owns become void; the other pixels form one segment per stuff class.

The sequential "paste in order" is computed without a loop over boxes: the kept set is the
fixed point of ``keep_i = overlap(mask_i, masks of kept j < i) <= thresh``, reached from
"keep all" in a few batched rounds (round k fixes at least the first k boxes, so it ends).
"""
import torch
from detectron2.config import configurable

from .targets import borderness_from_distances

__all__ = ["ParameterFreePanopticHead"]

POLICIES = ("borderness", "area", "confidence")


class ParameterFreePanopticHead:
    @configurable
    def __init__(self, *, thing_ids, stuff_ids, num_classes, overlap_thresh=0.3, policy="borderness",
                 min_score=0.0, stuff_area_limit=0):
        if policy not in POLICIES:
            raise ValueError(f"Unknown OVERLAP_POLICY {policy!r}; expected one of {POLICIES}")
        self.thing_ids = list(thing_ids)
        self.stuff_ids = list(stuff_ids)
        self.num_classes = num_classes
        self.overlap_thresh = overlap_thresh
        self.policy = policy
        self.min_score = min_score
        self.stuff_area_limit = stuff_area_limit

    @classmethod
    def from_config(cls, cfg, categories):
        p = cfg.MODEL.LPSNET.PANOPTIC
        return {
            "thing_ids": categories.thing_ids,
            "stuff_ids": categories.stuff_ids,
            "num_classes": categories.num_classes,
            "overlap_thresh": p.OVERLAP_THRESH,
            "policy": p.OVERLAP_POLICY,
            "min_score": p.MIN_SCORE,
            "stuff_area_limit": p.STUFF_AREA_LIMIT,
        }

    def _tables(self, device):
        is_thing = torch.zeros(self.num_classes, dtype=torch.bool, device=device)
        is_thing[self.thing_ids] = True
        is_stuff = torch.zeros(self.num_classes, dtype=torch.bool, device=device)
        is_stuff[self.stuff_ids] = True
        return is_thing, is_stuff

    def _resolve_conflicts(self, claim, owner, boxes, borderness, px, py):
        """Re-assign pixels claimed by several kept boxes by the area / border-ness policy."""
        conflict = (claim.sum(0) > 1).nonzero().squeeze(1)
        if conflict.numel() == 0:
            return owner
        c = claim[:, conflict]
        if self.policy == "area":
            box_area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            cost = box_area[:, None].expand_as(c)
        else:
            cx, cy = px[conflict], py[conflict]
            d = torch.stack((cx[None] - boxes[:, 0:1], cy[None] - boxes[:, 1:2],
                             boxes[:, 2:3] - cx[None], boxes[:, 3:4] - cy[None]), dim=-1)
            cost = (borderness_from_distances(d) - borderness[:, None]).abs()
        cost = torch.where(c, cost, torch.full_like(cost, float("inf")))
        owner = owner.clone()
        owner[conflict] = cost.argmin(0)  # ties -> the most confident (lowest index)
        return owner

    def __call__(self, sem, boxes, scores, classes, borderness):
        """
        Args:
            sem: (H, W) long, semantic class (contiguous id) per pixel.
            boxes: (D, 4) XYXY in the pixel frame of ``sem`` (pixel k spans [k, k+1));
            scores: (D,); classes: (D,) contiguous ids (things); borderness: (D,) predicted, in [0, 1].

        Returns:
            seg (H, W) int32 segment ids (0 = void), segments_info (list of dicts, detectron2's
            format; things carry "score" and "box_index" = their index in the inputs).
        """
        H, W = sem.shape
        device = sem.device
        is_thing, is_stuff = self._tables(device)
        sem_flat = sem.reshape(-1)
        seg = torch.zeros(H * W, dtype=torch.int32, device=device)

        keep_in = (scores >= self.min_score).nonzero().squeeze(1)
        order = keep_in[torch.argsort(scores[keep_in], descending=True)]
        boxes, scores, classes, borderness = boxes[order], scores[order], classes[order], borderness[order]
        D = boxes.shape[0]

        # Candidate pixels: those whose semantic class is the class of some box.
        has_box = torch.zeros(self.num_classes, dtype=torch.bool, device=device)
        has_box[classes] = True
        pix = (has_box[sem_flat] & is_thing[sem_flat]).nonzero().squeeze(1)
        py = torch.div(pix, W, rounding_mode="floor").to(boxes.dtype) + 0.5  # pixel centres
        px = (pix % W).to(boxes.dtype) + 0.5
        pcls = sem_flat[pix]
        m = (
            (px[None] >= boxes[:, 0:1]) & (px[None] <= boxes[:, 2:3])
            & (py[None] >= boxes[:, 1:2]) & (py[None] <= boxes[:, 3:4])
            & (pcls[None] == classes[:, None])
        )  # (D, P) masks
        area = m.sum(1)
        idx = torch.arange(D, device=device)
        owner = torch.full_like(pcls, -1)
        keep = area > 0
        if D:
            for _ in range(D + 1):
                first = torch.where(m & keep[:, None], idx[:, None], D).amin(0)  # first kept claimant
                taken = (m & (first[None] < idx[:, None])).sum(1)
                new_keep = (area > 0) & (taken <= self.overlap_thresh * area)
                if torch.equal(new_keep, keep):
                    break
                keep = new_keep
            claim = m & keep[:, None]
            owner = torch.where(first < D, first, owner)
            if self.policy != "confidence":
                owner = self._resolve_conflicts(claim, owner, boxes, borderness, px, py)

        # Thing segment ids 1..n in confidence order, for the kept boxes that own pixels.
        owned = owner >= 0
        counts = torch.bincount(owner[owned], minlength=D) if D else owner.new_zeros(0)
        has_pixels = counts > 0
        thing_seg = torch.cumsum(has_pixels.long(), 0) * has_pixels
        seg[pix[owned]] = thing_seg[owner[owned]].to(torch.int32)
        n_things = int(has_pixels.sum())

        # Stuff: one segment per stuff class among the pixels no thing owns.
        free = (seg == 0) & is_stuff[sem_flat]
        stuff_area = torch.bincount(sem_flat[free], minlength=self.num_classes)
        stuff_present = (stuff_area > 0) & (stuff_area >= self.stuff_area_limit) & is_stuff
        stuff_seg = (torch.cumsum(stuff_present.long(), 0) + n_things) * stuff_present
        seg[free] = stuff_seg[sem_flat[free]].to(torch.int32)

        info = []
        kept_idx = has_pixels.nonzero().squeeze(1)
        for i, cls, score, src in zip(thing_seg[kept_idx].tolist(), classes[kept_idx].tolist(),
                                      scores[kept_idx].tolist(), order[kept_idx].tolist()):
            info.append({"id": i, "category_id": cls, "isthing": True, "score": score, "box_index": src})
        stuff_classes = stuff_present.nonzero().squeeze(1)
        for i, cls, a in zip(stuff_seg[stuff_classes].tolist(), stuff_classes.tolist(),
                             stuff_area[stuff_classes].tolist()):
            info.append({"id": i, "category_id": cls, "isthing": False, "area": a})
        return seg.view(H, W), info
