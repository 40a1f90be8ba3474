"""Training targets of LPSNet's box head (Sec. 3.2), built from the mapper's ``instances``.

Per location of P3-P7 (FCOS locations ``x = s // 2 + i * s``), the targets are

* ``positive``: the location is a positive sample. With ``positive_samples="mask"`` (the
  paper, Fig. 3b) it must lie ON a thing's mask; with ``"box"`` (FCOS, Fig. 3a/7b) anywhere
  inside a GT box (the smallest box wins). In both cases the object must also fall in the
  level's regression range: ``max(l*, t*, r*, b*)`` in ``(lo, hi]`` (FCOS level assignment).
* ``box``: distances ``[l, t, r, b]`` from the location to the sides of the object's GT box.
* ``quality``: the border-ness target of Eq. 1, ``sqrt(min(l*, r*)/max(l*, r*) ·
  min(t*, b*)/max(t*, b*))`` where ``l*, r*`` are the distances from the pixel centre to the
  left/right border of the mask run (the maximal horizontal segment of the same mask through
  the pixel) and ``t*, b*`` the same vertically (Fig. 4); 0 off the mask. With
  ``quality_target="centerness"`` it is FCOS's centre-ness from the box distances instead.
"""
import math

import torch

__all__ = [
    "compute_locations",
    "level_ranges",
    "instance_id_map",
    "mask_border_distances",
    "borderness_from_distances",
    "build_box_targets",
]


def compute_locations(feature_shapes, strides, device):
    """FCOS locations: list over levels of (H_l * W_l, 2) float tensors of (x, y) in pixels."""
    out = []
    for (h, w), s in zip(feature_shapes, strides):
        xs = torch.arange(w, device=device, dtype=torch.float32) * s + s // 2
        ys = torch.arange(h, device=device, dtype=torch.float32) * s + s // 2
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        out.append(torch.stack((xx.reshape(-1), yy.reshape(-1)), dim=1))
    return out


def level_ranges(sizes_of_interest, num_levels):
    """[(lo, hi)] per level from FCOS's boundaries, e.g. [64, 128, 256, 512] for 5 levels."""
    bounds = [0.0] + [float(s) for s in sizes_of_interest] + [math.inf]
    assert len(bounds) == num_levels + 1, (sizes_of_interest, num_levels)
    return [(bounds[i], bounds[i + 1]) for i in range(num_levels)]


def instance_id_map(masks, size):
    """(H, W) long map of the instance index per pixel, -1 where none.

    ``masks``: (N, h, w) bool with h <= H, w <= W (the rest is padding). Where masks overlap
    the smallest one wins.
    """
    H, W = size
    out = torch.full((H, W), -1, dtype=torch.long, device=masks.device)
    n, h, w = masks.shape
    if n == 0:
        return out
    area = masks.flatten(1).sum(1)
    order = torch.argsort(area, descending=True)  # rank n-1 = smallest
    rank = torch.empty_like(order)
    rank[order] = torch.arange(n, device=masks.device)
    ranked = torch.where(masks, rank.view(-1, 1, 1), torch.full_like(rank.view(-1, 1, 1), -1)).amax(0)
    ids = torch.where(ranked >= 0, order[ranked.clamp(min=0)], torch.full_like(ranked, -1))
    out[:h, :w] = ids
    return out


def _run_bounds(ids, dim):
    """First and last index (along ``dim``) of the run of equal values each element lies in."""
    n = ids.shape[dim]
    idx = torch.arange(n, device=ids.device)
    shape = [1] * ids.dim()
    shape[dim] = n
    idx = idx.view(shape).expand_as(ids)
    change = torch.ones_like(ids, dtype=torch.bool)
    prev = ids.narrow(dim, 0, n - 1)
    nxt = ids.narrow(dim, 1, n - 1)
    change.narrow(dim, 1, n - 1).copy_(nxt != prev)  # element starts a run
    start = torch.where(change, idx, torch.zeros_like(idx)).cummax(dim).values
    ends = torch.ones_like(change)
    ends.narrow(dim, 0, n - 1).copy_(nxt != prev)  # element ends a run
    last = torch.where(ends, idx, torch.full_like(idx, n - 1)).flip(dim).cummin(dim).values.flip(dim)
    return start, last


def mask_border_distances(ids):
    """Distances from each pixel centre to the borders of its mask run: (4, H, W) l*, t*, r*, b*.

    ``ids``: (H, W) instance id map. A run is a maximal horizontal (for l*, r*) or vertical
    (for t*, b*) segment of pixels with the same id; borders lie on pixel edges, so a pixel
    in the middle of a 5-pixel run has l* = r* = 2.5.
    """
    x0, x1 = _run_bounds(ids, 1)
    y0, y1 = _run_bounds(ids, 0)
    xs = torch.arange(ids.shape[1], device=ids.device).view(1, -1)
    ys = torch.arange(ids.shape[0], device=ids.device).view(-1, 1)
    l = xs - x0 + 0.5
    r = x1 - xs + 0.5
    t = ys - y0 + 0.5
    b = y1 - ys + 0.5
    return torch.stack((l, t, r, b)).float()


def borderness_from_distances(d):
    """Eq. 1 on (..., 4) distances [l, t, r, b]; 0 where any distance is <= 0."""
    l, t, r, b = d.unbind(-1)
    lr = torch.minimum(l, r) / torch.maximum(l, r).clamp(min=1e-6)
    tb = torch.minimum(t, b) / torch.maximum(t, b).clamp(min=1e-6)
    return torch.sqrt((lr * tb).clamp(min=0))


def build_box_targets(instances, image_size, padded_size, locations, ranges,
                      positive_samples="mask", quality_target="borderness"):
    """Targets of one image, concatenated over levels.

    Args:
        instances: ``Instances`` with ``gt_boxes`` and ``gt_masks`` (BitMasks) at the image size.
        image_size: (h, w) of the image; padded_size: (H, W) of the padded batch.
        locations: list over levels of (L_l, 2); ranges: list of (lo, hi) per level.

    Returns:
        positive (L,) bool, box (L, 4) float [l, t, r, b], quality (L,) float, gt_index (L,)
        long (-1 on negatives).
    """
    locs = torch.cat(locations)
    device = locs.device
    L = locs.shape[0]
    lo = torch.cat([torch.full((len(p),), r[0], device=device) for p, r in zip(locations, ranges)])
    hi = torch.cat([torch.full((len(p),), r[1], device=device) for p, r in zip(locations, ranges)])
    boxes = instances.gt_boxes.tensor.to(device)
    n = boxes.shape[0]
    if n == 0:
        z = torch.zeros(L, device=device)
        return (torch.zeros(L, dtype=torch.bool, device=device), torch.zeros(L, 4, device=device), z,
                torch.full((L,), -1, dtype=torch.long, device=device))
    masks = instances.gt_masks.tensor.to(device)
    ids = instance_id_map(masks, padded_size)
    px = locs[:, 0].long().clamp(max=padded_size[1] - 1)
    py = locs[:, 1].long().clamp(max=padded_size[0] - 1)
    on_id = ids[py, px]  # instance whose mask the location lies on, -1 if none

    x, y = locs[:, 0:1], locs[:, 1:2]
    dist = torch.stack((x - boxes[:, 0], y - boxes[:, 1], boxes[:, 2] - x, boxes[:, 3] - y), dim=2)  # (L, N, 4)
    reach = dist.amax(2)
    in_range = (reach > lo[:, None]) & (reach <= hi[:, None])
    if positive_samples == "mask":
        cand = on_id.clamp(min=0)
        positive = (on_id >= 0) & in_range.gather(1, cand[:, None]).squeeze(1)
        gt = torch.where(positive, cand, torch.full_like(cand, -1))
    elif positive_samples == "box":
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        ok = (dist.amin(2) > 0) & in_range
        cost = torch.where(ok, area[None, :].expand(L, n), torch.full((L, n), math.inf, device=device))
        best, cand = cost.min(1)
        positive = torch.isfinite(best)
        gt = torch.where(positive, cand, torch.full_like(cand, -1))
    else:
        raise ValueError(f"Unknown POSITIVE_SAMPLES {positive_samples!r}; expected 'mask' or 'box'")

    box = dist.gather(1, gt.clamp(min=0).view(L, 1, 1).expand(L, 1, 4)).squeeze(1)
    box = box * positive[:, None]
    if quality_target == "borderness":
        border = mask_border_distances(ids)[:, py, px].t()  # (L, 4)
        quality = borderness_from_distances(border) * (positive & (on_id == gt))
    elif quality_target == "centerness":
        quality = borderness_from_distances(box) * positive
    else:
        raise ValueError(f"Unknown QUALITY_TARGET {quality_target!r}; expected 'borderness' or 'centerness'")
    return positive, box, quality, gt
