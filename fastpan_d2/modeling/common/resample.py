"""Resampling a map predicted on the padded input canvas to the original image size: the one
step every network's inference ends with (semantic / panoptic logits, centre offsets, ...).

``resample_to_output(x, stride, image_size, out_size)``: ``x`` (C, h, w) is on the padded canvas
at ``stride`` (cell i covers input pixels [i*stride, (i+1)*stride)); the image occupies
[0, image_size) of the canvas and was resized from ``out_size``. Output pixel y samples canvas
coordinate (y + 0.5) * image_h / out_h / stride - 0.5, bilinearly with align_corners=False rules
and edges clamped: the input's resize is undone exactly, in one pass, aspect-ratio change included.
When ``out_size == image_size`` this is detectron2's ``sem_seg_postprocess`` after upsampling
to the padded input, bit for bit up to float rounding; when it differs, detectron2 resamples
twice (to the padded input, then to the output size) and this once.

Only the cells under the image are read, and the result is channels-last: the per-pixel
reductions over channels that follow (argmax / max over dim 0) then read contiguous memory, and
CPU bilinear upsampling is faster in that layout.
"""
import math
from typing import Tuple

import torch
from torch.nn import functional as F

__all__ = ["resample_to_output"]


def resample_to_output(x: torch.Tensor, stride: float, image_size: Tuple[int, int],
                       out_size: Tuple[int, int]) -> torch.Tensor:
    """(C, h, w) on the padded canvas at ``stride`` -> (C, *out_size); see the module docstring."""
    h, w = int(image_size[0]), int(image_size[1])
    oh, ow = int(out_size[0]), int(out_size[1])
    # Only the cells under the image (+1 for the bilinear neighbour) matter.
    rows = min(x.shape[-2], math.ceil(h / stride) + 1)
    cols = min(x.shape[-1], math.ceil(w / stride) + 1)
    x = x[None, :, :rows, :cols].contiguous(memory_format=torch.channels_last)
    scale = (oh * stride / h, ow * stride / w)  # (stride, stride) when out_size == image_size
    y = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False,
                      recompute_scale_factor=False)
    if y.shape[-2] < oh or y.shape[-1] < ow:  # floor() of the output size fell one short
        y = F.pad(y, (0, max(ow - y.shape[-1], 0), 0, max(oh - y.shape[-2], 0)), mode="replicate")
    return y[0, :, :oh, :ow]
