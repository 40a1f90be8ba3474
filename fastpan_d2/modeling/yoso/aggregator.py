"""YOSO's feature pyramid aggregator (Sec. 3.2, Fig. 2).

C2..C5 -> 1x1 convs compress them to c2..c5 channels (L2..L5). Deformable feature pyramid,
top-down and level by level:

    P5 = L5
    P4 = L4 + up2(DCN5(P5))      DCN5: c5 -> c4
    P3 = L3 + up2(DCN4(P4))      DCN4: c4 -> c3
    P2 = L2 + up2(DCN3(P3))      DCN3: c3 -> c2

(each DCN is a modulated 3x3 deformable conv + norm + ReLU, so C3..C5's features pass through
DCNs on their way up.) Aggregation of P2..P5 into one map at 1/4 scale with d channels:

    IFA: W [up(P2); up(P3); up(P4); up(P5)]          (interpolate first, one 1x1 conv w/o bias)
    CFA: up(W2 P2) + up(W3 P3) + up(W4 P4) + up(W5 P5) (1x1 conv w/o bias per level first)

Both are equal when W = [W2 W3 W4 W5] (Observation I); ``ifa_to_cfa_state_dict`` splits a
trained IFA weight that way. Then CoordConv: two channels of normalised (x, y) coordinates
are appended and a 1x1 conv + norm + ReLU projects to d channels: the feature map S.
"""
import torch
import torch.nn.functional as F
from detectron2.layers import Conv2d, get_norm
from torch import nn

from ..common.deform_conv import ModulatedDeformConv2d

__all__ = ["FeaturePyramidAggregator", "ifa_to_cfa_state_dict", "coord_features"]


def coord_features(x):
    """(B, 2, H, W) tensor of x and y coordinates in [-1, 1] on x's device and dtype."""
    B, _, H, W = x.shape
    ys = torch.linspace(-1, 1, H, device=x.device, dtype=x.dtype)
    xs = torch.linspace(-1, 1, W, device=x.device, dtype=x.dtype)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((xx, yy)).unsqueeze(0).expand(B, 2, H, W)


def _upsample_to(x, size):
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class FeaturePyramidAggregator(nn.Module):
    """See the module docstring. ``forward(features)`` takes the backbone's dict and returns S."""

    def __init__(
        self,
        in_channels,
        compress_channels=(128, 256, 512, 1024),
        out_channels=256,
        aggregation="CFA",
        deformable=True,
        norm="BN",
        coord_conv=True,
    ):
        super().__init__()
        assert len(in_channels) == len(compress_channels) == 4
        assert aggregation in ("IFA", "CFA"), aggregation
        self.compress_channels = list(compress_channels)
        self.out_channels = out_channels
        self.aggregation = aggregation
        self.coord_conv = coord_conv
        self.lateral = nn.ModuleList(
            [Conv2d(ci, co, 1) for ci, co in zip(in_channels, compress_channels)]
        )
        # top-down convs: index i maps level i+1's channels to level i's (for P2, P3, P4)
        self.top_down = nn.ModuleList()
        for c_hi, c_lo in zip(compress_channels[1:], compress_channels[:-1]):
            if deformable:
                conv = ModulatedDeformConv2d(
                    c_hi, c_lo, 3, bias=not norm, norm=get_norm(norm, c_lo), activation=nn.ReLU()
                )
            else:
                conv = Conv2d(
                    c_hi, c_lo, 3, padding=1, bias=not norm, norm=get_norm(norm, c_lo), activation=nn.ReLU()
                )
            self.top_down.append(conv)
        if aggregation == "IFA":
            self.ifa = nn.Conv2d(sum(compress_channels), out_channels, 1, bias=False)
        else:
            self.cfa = nn.ModuleList([nn.Conv2d(c, out_channels, 1, bias=False) for c in compress_channels])
        proj_in = out_channels + (2 if coord_conv else 0)
        self.proj = Conv2d(
            proj_in, out_channels, 1, bias=not norm, norm=get_norm(norm, out_channels), activation=nn.ReLU()
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for m in self.top_down:  # keep DCNv2's zero offsets / 0.5 mask initialisation
            if isinstance(m, ModulatedDeformConv2d):
                nn.init.zeros_(m.offset_conv.weight)
                nn.init.zeros_(m.offset_conv.bias)
                nn.init.kaiming_uniform_(m.weight, a=1)

    def pyramid(self, feats):
        """[C2, C3, C4, C5] -> [P2, P3, P4, P5]."""
        lat = [conv(f) for conv, f in zip(self.lateral, feats)]
        outs = [lat[3]]
        for i in (2, 1, 0):
            up = self.top_down[i](outs[0])
            outs.insert(0, lat[i] + _upsample_to(up, lat[i].shape[-2:]))
        return outs

    def aggregate(self, pyramid):
        size = pyramid[0].shape[-2:]
        if self.aggregation == "IFA":
            return self.ifa(torch.cat([_upsample_to(p, size) for p in pyramid], dim=1))
        out = self.cfa[0](pyramid[0])
        for conv, p in zip(self.cfa[1:], pyramid[1:]):
            out = out + _upsample_to(conv(p), size)
        return out

    def forward(self, feats):
        x = self.aggregate(self.pyramid(feats))
        if self.coord_conv:
            x = torch.cat([x, coord_features(x)], dim=1)
        return self.proj(x)

    @torch.no_grad()
    def reparameterize_to_cfa(self):
        """Turn this IFA aggregator into the equivalent CFA in place (Observation I)."""
        if self.aggregation == "CFA":
            return self
        weights = self.ifa.weight.split(self.compress_channels, dim=1)
        self.cfa = nn.ModuleList()
        for w in weights:
            conv = nn.Conv2d(w.shape[1], w.shape[0], 1, bias=False).to(w.device, w.dtype)
            conv.weight.copy_(w)
            self.cfa.append(conv)
        del self.ifa
        self.aggregation = "CFA"
        return self


def ifa_to_cfa_state_dict(state_dict, compress_channels, prefix="aggregator."):
    """Return a copy of ``state_dict`` with ``{prefix}ifa.weight`` split into
    ``{prefix}cfa.{0..3}.weight`` by input channels c2, c3, c4, c5 (Observation I).

    Works on any model state dict (keys not of the aggregator are kept as they are); raises
    KeyError if there is no IFA weight under ``prefix``.
    """
    key = prefix + "ifa.weight"
    if key not in state_dict:
        raise KeyError(f"No IFA weight {key!r} in the state dict (already CFA, or wrong prefix?)")
    out = {k: v for k, v in state_dict.items() if k != key}
    w = state_dict[key]
    if w.shape[1] != sum(compress_channels):
        raise ValueError(f"{key} has {w.shape[1]} input channels, c2..c5 = {list(compress_channels)}")
    for i, part in enumerate(torch.split(torch.as_tensor(w), list(compress_channels), dim=1)):
        out[f"{prefix}cfa.{i}.weight"] = part.clone()
    return out
