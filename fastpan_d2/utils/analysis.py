"""The project's FLOP counter: multiply-adds of whatever runs, attention and deformable convs included.

Mirrors ``detectron2.utils.analysis`` (``flop_count_operators(model, inputs)``) and counts with
detectron2's / fvcore's conventions, so totals compare with the model zoo's and the papers'
"FLOPs": one multiply-add is one flop; convolutions, ``mm``/``addmm``/``bmm`` (so ``linear``,
``matmul`` and ``einsum``) count their multiply-adds; group/layer norm 5 per element (4 without
affine), BatchNorm 2 per element in eval mode (1 without affine; 5/4 in training; detectron2's
FrozenBatchNorm runs as one at inference), bilinear upsampling 4 and nearest 1 per output
element, adaptive average pooling 1 per input element, ``grid_sample`` 4 per output element;
elementwise ops count 0.
What fvcore misses and this counts:

* attention: ``scaled_dot_product_attention`` (Q·Kᵀ and A·V: 2·B·h·Lq·Lk·d) whichever kernel it
  takes, and ``nn.MultiheadAttention``'s fused inference path (``_native_multi_head_attention``:
  the input and output projections plus the two products);
* deformable convolution: ``torchvision::deform_conv2d`` counts as the dense convolution of the
  same shape (B·O·Ho·Wo·C/groups·kh·kw); fastpan_d2's CPU implementations reach the same
  number through their one matmul (their sampling is elementwise, as bilinear interpolation is
  not counted elsewhere either).

Unlike fvcore it does not trace: it counts the ATen operators of a real run (a dispatch mode,
with PyTorch's ``torch.utils.flop_counter`` formulas for matmuls and convolutions), so
data-dependent control flow, Python loops and post-processing are counted as they execute, on
CPU or CUDA, in any dtype. Per-module counts come from global module hooks (not
``FlopCounterMode``'s tracker, which fails under ``no_grad`` when a module gets a parameter as
input). Adaptive pooling to
1×1 runs as ``mean`` and is not counted (fvcore counts it: a few thousand flops).
"""
from collections import defaultdict

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import conv_flop_count, flop_registry, sdpa_flop_count, shape_wrapper

__all__ = ["MultiplyAddCounter", "count_flops", "flop_count_operators", "FLOP_FORMULAS"]

aten = torch.ops.aten
# FlopCounterMode's own formulas count 2 flops per multiply-add; ours follow suit and the
# counter halves the totals.
_PER_MAC = 2


def _numel(shape):
    n = 1
    for s in shape:
        n *= s
    return n


def _sdpa(query, key, value, *args, out_shape=None, **kwargs):
    return sdpa_flop_count(query, key, value)


def _native_mha(query, key, value, embed_dim, num_heads, *args, out_shape=None, **kwargs):
    B, L, E = query
    S = key[1]
    projections = B * L * E * E * 2 + B * S * E * E * 2  # q and out over L, k and v over S
    products = 2 * B * L * S * E  # Q·Kᵀ and A·V, summed over the heads
    return _PER_MAC * (projections + products)


def _deform_conv(input, weight, offset, mask, *args, out_shape=None, **kwargs):
    return conv_flop_count(list(input), list(weight), list(out_shape), transposed=False)


def _deform_conv_backward(grad, input, weight, *args, out_shape=None, **kwargs):
    # the input- and weight-gradient products of a dense conv, like convolution_backward's count
    return 2 * conv_flop_count(list(input), list(weight), list(grad), transposed=False)


def _norm(input, weight=None, *args, out_shape=None, **kwargs):
    return _PER_MAC * _numel(input) * (5 if weight is not None else 4)


def _batch_norm(input, weight, bias, running_mean, running_var, training, *args, out_shape=None, **kwargs):
    if training:
        return _norm(input, weight)
    return _PER_MAC * _numel(input) * (2 if weight is not None else 1)


def _batch_norm_no_training(input, weight, *args, out_shape=None, **kwargs):
    return _batch_norm(input, weight, None, None, None, False)


def _layer_norm(input, normalized_shape, weight=None, *args, out_shape=None, **kwargs):
    return _norm(input, weight)


def _per_output(scale):
    def formula(*args, out_shape=None, **kwargs):
        return _PER_MAC * scale * _numel(out_shape)

    return formula


def _per_input(input, *args, out_shape=None, **kwargs):
    return _PER_MAC * _numel(input)


FLOP_FORMULAS = {
    aten._scaled_dot_product_flash_attention_for_cpu: _sdpa,
    aten._scaled_dot_product_attention_math: _sdpa,
    aten._native_multi_head_attention: _native_mha,
    torch.ops.torchvision.deform_conv2d: _deform_conv,
    torch.ops.torchvision._deform_conv2d_backward: _deform_conv_backward,
    aten.native_group_norm: _norm,
    aten.native_layer_norm: _layer_norm,
    aten.native_batch_norm: _batch_norm,
    aten._native_batch_norm_legit: _batch_norm,
    aten._native_batch_norm_legit_no_training: _batch_norm_no_training,
    aten.upsample_bilinear2d: _per_output(4),
    aten.upsample_nearest2d: _per_output(1),
    aten.grid_sampler_2d: _per_output(4),
    aten._adaptive_avg_pool2d: _per_input,
}


_FORMULAS = {**flop_registry, **{op: shape_wrapper(f) for op, f in FLOP_FORMULAS.items()}}


class MultiplyAddCounter(TorchDispatchMode):
    """Context manager: multiply-adds of everything that runs inside it.

    >>> with MultiplyAddCounter(model) as c:
    ...     model(inputs)
    >>> c.total(), c.by_operator(), c.by_module()

    ``model`` (optional) names the modules in ``by_module`` by their paths in it ("" is the model
    itself); other modules are named by their class.
    """

    def __init__(self, model=None):
        super().__init__()
        self._names = {id(m): n for n, m in model.named_modules()} if model is not None else {}
        self._by_op = defaultdict(int)
        self._by_module = defaultdict(int)
        self._stack = []
        self._hooks = []

    def __enter__(self):
        self._by_op.clear()
        self._by_module.clear()
        self._stack = []
        self._hooks = [
            torch.nn.modules.module.register_module_forward_pre_hook(self._enter_module),
            torch.nn.modules.module.register_module_forward_hook(self._exit_module, always_call=True),
        ]
        return super().__enter__()

    def __exit__(self, *exc):
        for h in self._hooks:
            h.remove()
        self._hooks = []
        return super().__exit__(*exc)

    def _enter_module(self, module, inputs):
        self._stack.append(self._names.get(id(module), type(module).__name__))

    def _exit_module(self, module, inputs, outputs):
        if self._stack:
            self._stack.pop()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = _FORMULAS.get(func._overloadpacket)
        if formula is not None:
            n = formula(*args, **kwargs, out_val=out) // _PER_MAC
            self._by_op[func._overloadpacket] += n
            self._by_module[self._stack[-1] if self._stack else ""] += n
        return out

    def total(self):
        return sum(self._by_op.values())

    def by_operator(self):
        """{operator name (e.g. "convolution", "bmm"): multiply-adds}."""
        return {str(op).split(".")[-1]: n for op, n in self._by_op.items()}

    def by_module(self, depth=None):
        """{module path: multiply-adds} of modules at most ``depth`` levels below the model
        (1 = its direct children). An operator counts for the innermost module running it and
        for that module's ancestors in the model, whoever called it: a head whose submodules a
        meta-arch calls through a method other than ``forward`` still gets their count."""
        out = defaultdict(int)
        for name, n in self._by_module.items():
            parts = name.split(".") if name else []
            for level in range(len(parts) + 1):
                if depth is None or level <= depth:
                    out[".".join(parts[:level])] += n
        return dict(out)


def _call(model, inputs):
    return model(*inputs) if isinstance(inputs, tuple) else model(inputs)


def count_flops(model, inputs, by_module_depth=None):
    """Multiply-adds of one ``model(inputs)`` (``model(*inputs)`` for a tuple) under ``no_grad``.

    Returns the total, or ``(total, {module path: multiply-adds})`` with ``by_module_depth``
    (see ``MultiplyAddCounter.by_module``)."""
    with torch.no_grad(), MultiplyAddCounter(model) as counter:
        _call(model, inputs)
    if by_module_depth is None:
        return counter.total()
    return counter.total(), counter.by_module(by_module_depth)


def flop_count_operators(model, inputs):
    """G multiply-adds per operator of one inference in eval mode, as
    ``detectron2.utils.analysis.flop_count_operators`` returns them (``inputs``: detectron2's
    list of dicts)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), MultiplyAddCounter(model) as counter:
            _call(model, inputs)
    finally:
        model.train(was_training)
    return {k: v / 1e9 for k, v in counter.by_operator().items()}
