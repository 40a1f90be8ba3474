"""Parameters and multiply-adds of EPSNet at the paper's 550x550 input (fvcore / detectron2 counting:
one "flop" = one multiply-add), including the semantic-head comparison of the paper's Table 3.

    python projects/EPSNet/count_flops.py [--config-file configs/COCO-PanopticSegmentation/epsnet_R_101_550.yaml]
"""
import argparse
import math

import torch
from detectron2.modeling import build_model
from detectron2.utils.analysis import FlopCountAnalysis

from fastpan_d2.engine import setup_cfg
from fastpan_d2.modeling.epsnet.heads import CoefficientSemanticHead, StandardSemanticHead


def macs(module, *inputs):
    a = FlopCountAnalysis(module, inputs)
    a.unsupported_ops_warnings(False)
    a.uncalled_modules_warnings(False)
    return a.total()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--config-file", default="configs/COCO-PanopticSegmentation/epsnet_R_101_550.yaml")
    p.add_argument("--size", type=int, default=550)
    p.add_argument("--skip-model", action="store_true")
    args = p.parse_args()
    cfg = setup_cfg(args.config_file, ["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu"])
    e = cfg.MODEL.EPSNET
    s = args.size
    from detectron2.data import MetadataCatalog
    from fastpan_d2.data.categories import PanopticCategories

    cats = PanopticCategories.from_metadata(MetadataCatalog.get(cfg.DATASETS.TRAIN[0]))
    c = cats.num_stuff + 1
    k = e.NUM_PROTOTYPES
    ch = cfg.MODEL.FPN.OUT_CHANNELS
    print(f"{cats.num_things} thing classes, {cats.num_stuff} stuff + 'other' = {c} semantic classes, k = {k}")
    # Feature sizes without padding (the paper's YOLACT code) and with this repo's padding to 32.
    for name, pad in (("unpadded (paper)", s), ("padded to 32 (here)", int(math.ceil(s / 32) * 32))):
        f3 = math.ceil(pad / 8)
        f7 = math.ceil(math.ceil(math.ceil(pad / 32) / 2) / 2)
        head = CoefficientSemanticHead(ch, e.HEAD_CHANNELS, k, c, e.NORM, "avg").eval()
        std = StandardSemanticHead(ch, c).eval()
        coef = macs(head, torch.zeros(1, ch, f7, f7))
        comb = f3 * 2 * f3 * 2 * k * c  # P · Y at 1/4
        stdm = macs(std, torch.zeros(1, ch, f3, f3))
        print(f"{name}: F3 {f3}x{f3}, F7 {f7}x{f7}, prototypes {2 * f3}x{2 * f3}")
        print(f"  coefficient head (F7 -> Y): {coef / 1e6:.2f} M multiply-adds (paper: 9.4 M); "
              f"+ P·Y at 1/4: {comb / 1e6:.1f} M")
        print(f"  standard head (1x1 conv on the fused {f3}x{f3} map): {stdm / 1e6:.1f} M (paper: 33.8 M)")
    if args.skip_model:
        return
    model = build_model(cfg).eval()
    n_params = sum(p.numel() for p in model.parameters())
    img = torch.zeros(3, s, s, dtype=torch.uint8)
    inputs = [{"image": img, "height": s, "width": s}]
    a = FlopCountAnalysis(model, (inputs,))
    a.unsupported_ops_warnings(False)
    a.uncalled_modules_warnings(False)
    by = a.by_module()
    print(f"params: {n_params / 1e6:.2f} M")
    print(f"total: {a.total() / 1e9:.1f} G multiply-adds at {s}x{s}")
    for m in ("backbone", "fusion", "proto_head", "instance_head", "semantic_head"):
        print(f"  {m}: {by.get('model.' + m, by.get(m, 0)) / 1e9:.2f} G")
    if e.FUSION == "CLA":
        # fvcore has no handler for scaled_dot_product_attention: add its two matmuls by hand,
        # s = θ(T)ᵀφ(O) and α·h(O), each N_t · N_s · E multiply-adds per source.
        pad = int(math.ceil(s / e.SIZE_DIVISIBILITY) * e.SIZE_DIVISIBILITY)
        n = {f"p{i}": math.ceil(pad / 2 ** i) ** 2 for i in range(2, 8)}
        tgt = n[e.FUSION_IN_FEATURES[0]]
        att = sum(2 * tgt * n[src] * e.CLA_EMBED_CHANNELS for src in e.CLA_SOURCES)
        print(f"  + CLA attention matmuls (not counted above): {att / 1e9:.2f} G -> total {(a.total() + att) / 1e9:.1f} G")


if __name__ == "__main__":
    main()
