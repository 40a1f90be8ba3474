"""FPSNet's panoptic output (Sec. III-A2, Fig. 6): upsample, argmax, read classes off detections.

There is no merging step: the panoptic head's logits already put things and stuff in one map.
Only the channels that can be read as a segment take part in the argmax: the slots that hold
a detection (in inference the slots are in score order, so the first ``n``) and the stuff
channels; empty slots and the two training-only outputs are left out before upsampling.

Speed (CPU): the logits are upsampled in channels-last layout (``common.resample``), so that the
argmax over channels reads contiguous memory: 2-3x faster than NCHW at 1024x2048 with 61
channels. (Computing the argmax only at segment borders, where the four bilinear source cells
disagree, was tried and was slower: the gathers cost more than the dense upsampling.)
"""
from typing import List, Tuple

import torch
from torch import Tensor

from ..common.resample import resample_to_output


def panoptic_from_logits(
    logits: Tensor,
    num_dets: int,
    det_classes: Tensor,
    det_scores: Tensor,
    num_masks: int,
    thing_ids: List[int],
    stuff_ids: List[int],
    padded_size: Tuple[int, int],
    image_size: Tuple[int, int],
    output_size: Tuple[int, int],
    stuff_area_limit: int = 0,
):
    """
    Args:
        logits: (N_att + N_stuff [+ 2], h, w) panoptic-head logits of one image.
        num_dets: n, slots 0..n-1 hold detections (score order); det_classes/det_scores (>= n,)
            their thing index and score.
        num_masks: N_att. thing_ids / stuff_ids: contiguous ids of thing index / stuff index.
        padded_size, image_size: the network input (padded batch) and this image's size in it.
        output_size: (H, W) of the output (the original image).
        stuff_area_limit: stuff segments with fewer pixels become void (0 = keep all).

    Returns:
        ``(seg, segments_info)`` in detectron2's panoptic format: seg (H, W) int32, 0 = void;
        the segment of slot c (thing) or of stuff channel c has id c + 1.
    """
    num_stuff = len(stuff_ids)
    keep = torch.cat([logits[:num_dets], logits[num_masks : num_masks + num_stuff]])
    H, W = int(output_size[0]), int(output_size[1])
    C = keep.shape[0]
    if C == 0:
        return torch.zeros((H, W), dtype=torch.int32, device=logits.device), []
    stride = padded_size[0] / logits.shape[-2]
    label = resample_to_output(keep, stride, image_size, (H, W)).argmax(dim=0)
    area = torch.bincount(label.flatten(), minlength=C)
    present = area > 0
    is_thing = torch.arange(C, device=label.device) < num_dets
    if stuff_area_limit > 0:
        present &= is_thing | (area >= stuff_area_limit)
    ids = torch.where(present, torch.arange(1, C + 1, device=label.device), torch.zeros_like(area))
    seg = ids[label].to(torch.int32)

    present_list = present.nonzero().flatten().tolist()
    area_list = area.tolist()
    classes = det_classes[:num_dets].tolist()
    scores = det_scores[:num_dets].tolist()
    segments_info = []
    for c in present_list:
        if c < num_dets:
            segments_info.append(
                {
                    "id": c + 1,
                    "category_id": int(thing_ids[classes[c]]),
                    "isthing": True,
                    "score": float(scores[c]),
                    "area": int(area_list[c]),
                }
            )
        else:
            segments_info.append(
                {
                    "id": c + 1,
                    "category_id": int(stuff_ids[c - num_dets]),
                    "isthing": False,
                    "area": int(area_list[c]),
                }
            )
    return seg, segments_info
