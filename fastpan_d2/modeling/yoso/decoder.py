"""YOSO's separable dynamic decoder (Sec. 3.3, Fig. 3).

n learnable proposal kernels Q0 (n, d) give the first attention maps A = S * Q0. Each of the T
stages then

1. pre-attention: hard sigmoid of the previous attention maps (sigma(A) >= 0.5 -> 1, else 0; no
   gradient), masked pooling V = r(sigma(A)) r(S)^T (Eq. 3), V layer-normalised;
2. N attention blocks: Q = LN(Q + Attn(Q, V)), Attn one of MHCA/DCA/SDCA/PDCA/DDCA;
3. post-attention: Q = LN(Q + MHSA(Q)), Q = LN(Q + FFN(Q)) -> the panoptic kernels;
4. class FFN -> (l + 1) logits (last = no object); mask-kernel FFN -> kernels K (n, d);
   masks = K * S, a dynamic 1x1 conv with the features (B, n, h, w).

The stage's panoptic kernels are the next stage's Q and its masks the next attention maps.
"""
import torch
from torch import nn

from .attention import build_cross_attention

__all__ = ["SeparableDynamicDecoder"]


def _ffn_layers(d, num_layers):
    layers = []
    for _ in range(num_layers):
        layers += [nn.Linear(d, d, bias=False), nn.LayerNorm(d), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def dynamic_mask_conv(kernels, feats):
    """kernels (B, n, d), feats (B, d, h, w) -> (B, n, h, w): 1x1 dynamic conv."""
    B, d, h, w = feats.shape
    return torch.bmm(kernels, feats.flatten(2)).view(B, -1, h, w)


class DecoderStage(nn.Module):
    def __init__(self, d, n, num_classes, num_blocks, t, attention, num_heads, dim_ff, dropout,
                 num_cls_fcs, num_mask_fcs, pointwise_softmax=True):
        super().__init__()
        self.v_norm = nn.LayerNorm(d)
        self.cross = nn.ModuleList([build_cross_attention(attention, d, n, t, num_heads, pointwise_softmax) for _ in range(num_blocks)])
        self.cross_norms = nn.ModuleList([nn.LayerNorm(d) for _ in range(num_blocks)])
        self.self_attn = nn.MultiheadAttention(d, num_heads, dropout=dropout, batch_first=True)
        self.self_norm = nn.LayerNorm(d)
        self.ffn = nn.Sequential(
            nn.Linear(d, dim_ff), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(dim_ff, d)
        )
        self.ffn_norm = nn.LayerNorm(d)
        self.dropout = nn.Dropout(dropout)
        self.cls_fcs = _ffn_layers(d, num_cls_fcs)
        self.cls_out = nn.Linear(d, num_classes + 1)
        self.mask_fcs = _ffn_layers(d, num_mask_fcs)
        self.mask_out = nn.Linear(d, d)

    def forward(self, q, attn_maps, feats):
        # pre-attention: hard sigmoid at 0.5 == attention logit >= 0; masked pooling (Eq. 3)
        hard = (attn_maps.detach() >= 0).to(feats.dtype).flatten(2)  # (B, n, hw)
        v = self.v_norm(torch.bmm(hard, feats.flatten(2).transpose(1, 2)))  # (B, n, d)
        for attn, norm in zip(self.cross, self.cross_norms):
            q = norm(q + self.dropout(attn(q, v)))
        q = self.self_norm(q + self.dropout(self.self_attn(q, q, q, need_weights=False)[0]))
        q = self.ffn_norm(q + self.dropout(self.ffn(q)))
        cls_logits = self.cls_out(self.cls_fcs(q))
        mask_kernels = self.mask_out(self.mask_fcs(q))
        return q, cls_logits, dynamic_mask_conv(mask_kernels, feats)


class SeparableDynamicDecoder(nn.Module):
    def __init__(self, hidden_dim=256, num_proposals=100, num_classes=133, num_stages=2,
                 num_blocks=2, kernel_size=3, attention="SDCA", num_heads=8, dim_feedforward=2048,
                 dropout=0.0, num_cls_fcs=1, num_mask_fcs=1, pointwise_softmax=True, share_heads=False):
        super().__init__()
        self.proposal_kernels = nn.Parameter(torch.empty(num_proposals, hidden_dim))
        nn.init.normal_(self.proposal_kernels, std=1.0)
        self.stages = nn.ModuleList(
            [
                DecoderStage(hidden_dim, num_proposals, num_classes, num_blocks, kernel_size, attention,
                             num_heads, dim_feedforward, dropout, num_cls_fcs, num_mask_fcs, pointwise_softmax)
                for _ in range(num_stages)
            ]
        )
        if share_heads:  # one class FFN and one mask-kernel FFN for all stages (see config.py)
            first = self.stages[0]
            for stage in self.stages[1:]:
                stage.cls_fcs, stage.cls_out = first.cls_fcs, first.cls_out
                stage.mask_fcs, stage.mask_out = first.mask_fcs, first.mask_out

    def forward(self, feats):
        """feats S (B, d, h, w) -> list over stages of (class logits (B, n, l+1), mask logits (B, n, h, w))."""
        B = feats.shape[0]
        q = self.proposal_kernels.unsqueeze(0).expand(B, -1, -1)
        attn_maps = dynamic_mask_conv(q, feats)
        outputs = []
        for stage in self.stages:
            q, cls_logits, attn_maps = stage(q, attn_maps, feats)
            outputs.append((cls_logits, attn_maps))
        return outputs
