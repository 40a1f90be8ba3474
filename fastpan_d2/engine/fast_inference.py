"""The fast inference path for any detectron2 model (fastpan_d2's five and detectron2's own).

``apply_fast_inference(model, cfg)`` prepares a built model for inference, in place, with what
the config asks for (all off by default):

* ``TEST.FOLD_BATCHNORM``: every BatchNorm that follows a conv as its ``norm`` (detectron2's
  ``Conv2d`` and fastpan_d2's ``ModulatedDeformConv2d``) is folded into that conv's weight and
  bias: ``W' = W·s``, ``b' = (b − μ)·s + β`` with ``s = γ / sqrt(σ² + ε)``. Exact for
  ``FrozenBatchNorm2d`` and for ``BatchNorm2d`` / SyncBN in eval mode (running statistics), up
  to float rounding; saves the norm's separate pass over the feature map.
* ``TEST.CHANNELS_LAST``: 4-d weights in channels-last memory format. The first conv then
  returns channels-last activations and the layout propagates, which oneDNN's CPU convolutions
  (and cuDNN's fp16 ones) run faster.
* ``TEST.AMP.ENABLED``: the forward runs under ``torch.autocast`` (``TEST.AMP.DTYPE``; "" =
  bfloat16 on CPU, float16 on CUDA) and its floating-point outputs are returned as float32. On
  a CPU without native bfloat16 (``torch.ops.mkldnn._is_mkldnn_bf16_supported()``) autocast
  would be emulated and slow: it is skipped with a warning.

The model is switched to eval mode; after folding it must not be trained (the norms are gone),
so an evaluation during training (``Trainer.test``) prepares a copy. ``model._fast_inference``
records what was applied.
"""
import copy
import logging
import types
from collections.abc import Mapping

import torch
from detectron2.layers import Conv2d, FrozenBatchNorm2d
from detectron2.structures import Boxes, Instances
from torch import nn

from ..modeling.common.deform_conv import ModulatedDeformConv2d

__all__ = [
    "apply_fast_inference",
    "fast_inference_options",
    "fast_inference_requested",
    "fast_inference_copy",
    "fold_batchnorm",
    "resolve_amp_dtype",
]

logger = logging.getLogger(__name__)

# Modules whose forward is norm(conv(x) + bias): their `norm` can be folded into the weights.
FOLDABLE_CONVS = (Conv2d, ModulatedDeformConv2d)
_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def fast_inference_options(cfg):
    """The fast-path settings of a config: ``{"fold_batchnorm", "channels_last", "amp", "amp_dtype"}``."""
    return {
        "fold_batchnorm": bool(cfg.TEST.FOLD_BATCHNORM),
        "channels_last": bool(cfg.TEST.CHANNELS_LAST),
        "amp": bool(cfg.TEST.AMP.ENABLED),
        "amp_dtype": cfg.TEST.AMP.DTYPE,
    }


def fast_inference_requested(cfg):
    opts = fast_inference_options(cfg)
    return opts["fold_batchnorm"] or opts["channels_last"] or opts["amp"]


def _batchnorm_scale_shift(norm):
    """(s, t) with norm(y) = y·s + t, in float64; None if ``norm`` is not a foldable BatchNorm."""
    if isinstance(norm, FrozenBatchNorm2d):
        weight, bias = norm.weight, norm.bias
    elif isinstance(norm, nn.modules.batchnorm._BatchNorm) and not norm.training:
        if norm.running_mean is None:  # track_running_stats=False: batch statistics even in eval
            return None
        weight = norm.weight if norm.weight is not None else torch.ones_like(norm.running_var)
        bias = norm.bias if norm.bias is not None else torch.zeros_like(norm.running_mean)
    else:
        return None
    scale = weight.double() / (norm.running_var.double() + norm.eps).sqrt()
    return scale, bias.double() - norm.running_mean.double() * scale


@torch.no_grad()
def fold_batchnorm(model):
    """Fold BatchNorms into the convs they follow (module docstring); returns how many were folded."""
    folded = 0
    for module in model.modules():
        if not isinstance(module, FOLDABLE_CONVS) or getattr(module, "norm", None) is None:
            continue
        scale_shift = _batchnorm_scale_shift(module.norm)
        if scale_shift is None:
            continue
        scale, shift = scale_shift
        w = module.weight
        module.weight.copy_((w.double() * scale.view(-1, *([1] * (w.dim() - 1)))).to(w.dtype))
        b = module.bias.double() if module.bias is not None else torch.zeros_like(shift)
        new_bias = (b * scale + shift).to(w.dtype)
        if module.bias is None:
            module.bias = nn.Parameter(new_bias, requires_grad=w.requires_grad)
        else:
            module.bias.copy_(new_bias)
        module.norm = None
        folded += 1
    return folded


def resolve_amp_dtype(device_type, name=""):
    """The autocast dtype for ``device_type`` ("cpu"/"cuda"), or None where autocast would not help."""
    if name and name not in _DTYPES:
        raise ValueError(f"TEST.AMP.DTYPE must be '', 'bfloat16' or 'float16', got {name!r}")
    dtype = _DTYPES[name] if name else (torch.bfloat16 if device_type == "cpu" else torch.float16)
    if device_type == "cpu":
        if dtype != torch.bfloat16:
            raise ValueError("CPU autocast supports bfloat16 only (TEST.AMP.DTYPE)")
        if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            logger.warning("TEST.AMP: this CPU has no native bfloat16; running in float32")
            return None
    return dtype


def _to_float32(obj):
    """Floating-point tensors in a model's outputs (nested dicts/lists/tuples, Instances, Boxes)
    back to float32."""
    if isinstance(obj, torch.Tensor):
        return obj.float() if obj.is_floating_point() and obj.dtype != torch.float32 else obj
    if isinstance(obj, Mapping):
        return type(obj)((k, _to_float32(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        items = [_to_float32(v) for v in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)
    if isinstance(obj, Instances):
        for name, value in obj.get_fields().items():
            obj.set(name, _to_float32(value))
        return obj
    if isinstance(obj, Boxes):
        return Boxes(_to_float32(obj.tensor))
    return obj


def _forward_under_autocast(self, *args, **kwargs):
    device_type, dtype = self._fast_inference["amp_device"], self._fast_inference["amp_dtype"]
    with torch.autocast(device_type, dtype=dtype):
        out = type(self).forward(self, *args, **kwargs)
    return _to_float32(out)


def _model_device(model):
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def apply_fast_inference(model, cfg=None, *, fold=None, channels_last=None, amp=None, amp_dtype=None):
    """Prepare ``model`` for fast inference, in place; returns it. Settings come from ``cfg``
    (``fast_inference_options``); keyword arguments override them."""
    opts = fast_inference_options(cfg) if cfg is not None else {
        "fold_batchnorm": False, "channels_last": False, "amp": False, "amp_dtype": ""}
    for key, value in (("fold_batchnorm", fold), ("channels_last", channels_last), ("amp", amp),
                       ("amp_dtype", amp_dtype)):
        if value is not None:
            opts[key] = value
    model.eval()
    applied = dict(getattr(model, "_fast_inference", {}))
    if opts["fold_batchnorm"]:
        applied["folded_batchnorms"] = applied.get("folded_batchnorms", 0) + fold_batchnorm(model)
    if opts["channels_last"]:
        model.to(memory_format=torch.channels_last)
        applied["channels_last"] = True
    if opts["amp"] and "amp_dtype" not in applied:
        device_type = _model_device(model).type
        dtype = resolve_amp_dtype(device_type, opts["amp_dtype"])
        if dtype is not None:
            applied.update(amp_device=device_type, amp_dtype=dtype)
            model.forward = types.MethodType(_forward_under_autocast, model)
    model._fast_inference = applied
    logger.info("Fast inference: %s", {k: str(v) for k, v in applied.items()} or "nothing enabled")
    return model


def fast_inference_copy(model, cfg):
    """``model`` itself if the config asks for no fast path, else a prepared copy (the model
    stays trainable: an evaluation during training must not fold its norms)."""
    if not fast_inference_requested(cfg):
        return model
    if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    return apply_fast_inference(copy.deepcopy(model), cfg)
