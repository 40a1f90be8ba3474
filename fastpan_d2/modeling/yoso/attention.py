"""Cross-attention modules of YOSO's decoder (Sec. 3.3, Table 6).

All take the proposal kernels Q (B, n, d) and the masked features V (B, n, d) and return
(B, n, d):

* ``MHCA``: multi-head cross-attention (Eq. 4-5): softmax(Q Wq (V Wk)^T / sqrt) V Wv, then Wo.
* ``DCA``: dynamic convolution attention (Eq. 8): K = r(Q W) in (n, n, t); a 1D conv over the
  hidden dimension: O[i, j] = sum_p sum_q K[i, p, q] V[p, j + q - t//2] (Eq. 7, "same" padding).
* ``SDCA``: separable dynamic convolution attention (Eq. 9): depthwise dynamic 1D conv, token i
  filtered by its own kernel r(Q W^d)[i] in (t,), then pointwise dynamic conv across tokens with
  r(Q W^p) in (n, n).
* ``PDCA``: only the pointwise (cross-token) part of SDCA.
* ``DDCA``: only the depthwise (cross-dimension) part of SDCA.

The dynamic kernels are linear projections of Q without bias, as in the equations. Deviation
(``pointwise_softmax``, config MODEL.YOSO.POINTWISE_SOFTMAX, default True): the cross-token kernel
r(Q W^p) (and DCA's r(Q W)) is normalised with a softmax over the source tokens, as the correlation
matrix K_i of Eq. 5 is. Unnormalised (the equations read literally), a sum over n tokens swamps the
kernels' own identity and the classifier barely learns when training from scratch (measured here:
on one synthetic batch, stage-2 CE 3.37 after 60 AdamW steps vs 1.89 with the softmax; MHCA 1.77).
"""
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["build_cross_attention", "ATTENTIONS", "depthwise_dynamic_conv1d"]


def sliding_windows(v, t):
    """(B, n, d) -> (B, n, d, t): windows[..., j, q] = v[..., j + q - t//2], zeros outside."""
    return F.pad(v, (t // 2, t - 1 - t // 2)).unfold(-1, t, 1)


def depthwise_dynamic_conv1d(v, kernels):
    """v: (B, n, d), kernels: (B, n, t) -> (B, n, d); token i's row convolved (correlation,
    zero "same" padding) with its own kernel along the hidden dimension."""
    return torch.einsum("bndt,bnt->bnd", sliding_windows(v, kernels.shape[-1]), kernels)


class MHCA(nn.Module):
    def __init__(self, d, n, t, num_heads=8, pointwise_softmax=None):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, num_heads, batch_first=True)

    def forward(self, q, v):
        return self.attn(q, v, v, need_weights=False)[0]


class DCA(nn.Module):
    def __init__(self, d, n, t, num_heads=None, pointwise_softmax=True):
        super().__init__()
        self.n, self.t = n, t
        self.kernel = nn.Linear(d, n * t, bias=False)  # W in R^{d x nt}
        self.pointwise_softmax = pointwise_softmax

    def forward(self, q, v):
        B, n, d = q.shape
        k = self.kernel(q).view(B, n, n, self.t)  # K[i, p, q]
        if self.pointwise_softmax:  # normalise over the source tokens p and taps q jointly
            k = k.flatten(2).softmax(-1).view(B, n, n, self.t)
        return torch.einsum("bipq,bpjq->bij", k, sliding_windows(v, self.t))


class SDCA(nn.Module):
    def __init__(self, d, n, t, num_heads=None, depthwise=True, pointwise=True, pointwise_softmax=True):
        super().__init__()
        assert depthwise or pointwise
        self.depth = nn.Linear(d, t, bias=False) if depthwise else None  # W^d in R^{d x t}
        self.point = nn.Linear(d, n, bias=False) if pointwise else None  # W^p in R^{d x n}
        self.pointwise_softmax = pointwise_softmax

    def forward(self, q, v):
        out = v
        if self.depth is not None:
            out = depthwise_dynamic_conv1d(out, self.depth(q))
        if self.point is not None:
            k = self.point(q)  # (B, n, n): row i mixes the n tokens into token i
            if self.pointwise_softmax:
                k = k.softmax(-1)
            out = torch.bmm(k, out)
        return out


class PDCA(SDCA):
    def __init__(self, d, n, t, num_heads=None, pointwise_softmax=True):
        super().__init__(d, n, t, depthwise=False, pointwise=True, pointwise_softmax=pointwise_softmax)


class DDCA(SDCA):
    def __init__(self, d, n, t, num_heads=None, pointwise_softmax=True):
        super().__init__(d, n, t, depthwise=True, pointwise=False)


ATTENTIONS = {"MHCA": MHCA, "DCA": DCA, "SDCA": SDCA, "PDCA": PDCA, "DDCA": DDCA}


def build_cross_attention(name, d, n, t, num_heads=8, pointwise_softmax=True):
    if name not in ATTENTIONS:
        raise ValueError(f"Unknown YOSO attention {name!r}; choose from {sorted(ATTENTIONS)}")
    return ATTENTIONS[name](d, n, t, num_heads=num_heads, pointwise_softmax=pointwise_softmax)
