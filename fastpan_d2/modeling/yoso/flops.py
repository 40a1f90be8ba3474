"""fvcore FLOP counts (multiply-adds, detectron2's convention) of YOSO's modules at the settings of
the paper's Tables 5 and 6, for the model card and the tests.

fvcore has no handle for ``aten::scaled_dot_product_attention`` (used by ``nn.MultiheadAttention``);
it is counted here as its two matmuls: n_q * n_k * d (QK^T) + n_q * n_k * d (attention x V).
"""
import torch
from fvcore.nn import FlopCountAnalysis
from torch import nn

from .aggregator import FeaturePyramidAggregator
from .attention import build_cross_attention

__all__ = ["sdpa_flop_jit", "count_flops", "attention_flops", "aggregation_flops"]


def sdpa_flop_jit(inputs, outputs):
    q, k = inputs[0].type().sizes(), inputs[1].type().sizes()
    batch = 1
    for s in q[:-2]:
        batch *= s
    return 2 * batch * q[-2] * k[-2] * q[-1]


def count_flops(module, inputs):
    f = FlopCountAnalysis(module, inputs)
    f.set_op_handle("aten::scaled_dot_product_attention", sdpa_flop_jit)
    f.unsupported_ops_warnings(False)
    f.uncalled_modules_warnings(False)
    return f.total()


def attention_flops(name, n=100, d=256, t=3, num_heads=8):
    """Table 6 setting: one cross-attention module, n tokens of dimension d, kernel t."""
    m = build_cross_attention(name, d, n, t, num_heads).eval()
    return count_flops(m, (torch.randn(1, n, d), torch.randn(1, n, d)))


class _Aggregation(nn.Module):
    def __init__(self, agg):
        super().__init__()
        self.agg = agg

    def forward(self, p2, p3, p4, p5):
        return self.agg.aggregate([p2, p3, p4, p5])


def aggregation_flops(mode, d=256, channels=(128, 256, 512, 1024), h=256, w=256):
    """Table 5 setting: the IFA / CFA aggregation of P2..P5 (P2 at h x w) into d channels."""
    agg = FeaturePyramidAggregator(channels, channels, d, aggregation=mode, deformable=False).eval()
    ps = [torch.randn(1, c, h >> i, w >> i) for i, c in enumerate(channels)]
    return count_flops(_Aggregation(agg), tuple(ps))
