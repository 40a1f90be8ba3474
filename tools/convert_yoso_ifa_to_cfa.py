#!/usr/bin/env python
"""Re-parameterize a YOSO checkpoint trained with IFA into the equivalent CFA (Observation I).

    python tools/convert_yoso_ifa_to_cfa.py --config-file configs/COCO-PanopticSegmentation/yoso_R_50_800.yaml \
        --input output/model_final.pth --output output/model_final_cfa.pth

The IFA 1x1 weight ``aggregator.ifa.weight`` (d, c2+c3+c4+c5) is split by input channels into
``aggregator.cfa.{0..3}.weight``; every other tensor (and the checkpoint's other entries, e.g.
``iteration``) is copied unchanged. Evaluate the result with ``MODEL.YOSO.AGGREGATOR.AGGREGATION CFA``.
c2..c5 come from ``--config-file`` (MODEL.YOSO.AGGREGATOR.COMPRESS_CHANNELS) or ``--channels``.
With ``--check`` the converted model is built and its outputs compared with the IFA model's on a
random image.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fastpan_d2.modeling.yoso.aggregator import ifa_to_cfa_state_dict  # noqa: E402


def convert_checkpoint(ckpt, channels, prefix="aggregator."):
    """A detectron2 checkpoint dict ({"model": state_dict, ...}) or a bare state dict -> converted copy."""
    if "model" in ckpt and isinstance(ckpt["model"], dict):
        out = dict(ckpt)
        out["model"] = ifa_to_cfa_state_dict(ckpt["model"], channels, prefix)
        return out
    return ifa_to_cfa_state_dict(ckpt, channels, prefix)


def check(config_file, opts, ifa_ckpt, cfa_ckpt):
    from detectron2.modeling import build_model

    from fastpan_d2.engine import load_cfg

    outs = []
    torch.manual_seed(0)
    image = torch.randint(0, 255, (3, 96, 160), dtype=torch.uint8)
    for mode, ckpt in (("IFA", ifa_ckpt), ("CFA", cfa_ckpt)):
        cfg = load_cfg(config_file, list(opts) + ["MODEL.YOSO.AGGREGATOR.AGGREGATION", mode, "MODEL.DEVICE", "cpu"])
        model = build_model(cfg).eval()
        model.load_state_dict(ckpt.get("model", ckpt))
        with torch.no_grad():
            outs.append(model.predict(model.preprocess_image([{"image": image}]))[-1])
    diff = max((a - b).abs().max().item() for a, b in zip(*outs))
    print(f"max |IFA - CFA| over class and mask logits: {diff:.3g}")
    return diff


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", required=True, help="IFA checkpoint (.pth)")
    p.add_argument("--output", required=True, help="where to write the CFA checkpoint")
    p.add_argument("--config-file", default="", help="config of the model (for c2..c5 and --check)")
    p.add_argument("--channels", type=int, nargs=4, default=None, help="c2 c3 c4 c5 (overrides the config)")
    p.add_argument("--prefix", default="aggregator.", help="state-dict prefix of the aggregator")
    p.add_argument("--check", action="store_true", help="compare IFA and CFA model outputs on a random image")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, KEY VALUE ...")
    args = p.parse_args(argv)
    if not os.path.isfile(args.input):
        p.error(f"checkpoint does not exist: {args.input}")
    channels = args.channels
    if channels is None:
        if not args.config_file:
            p.error("give --config-file or --channels")
        from fastpan_d2.engine import load_cfg

        channels = list(load_cfg(args.config_file, args.opts).MODEL.YOSO.AGGREGATOR.COMPRESS_CHANNELS)
    ckpt = torch.load(args.input, map_location="cpu", weights_only=False)
    try:
        out = convert_checkpoint(ckpt, channels, args.prefix)
    except (KeyError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    torch.save(out, args.output)
    print(f"wrote {args.output} (c2..c5 = {list(channels)}); evaluate with MODEL.YOSO.AGGREGATOR.AGGREGATION CFA")
    if args.check:
        if not args.config_file:
            p.error("--check needs --config-file")
        diff = check(args.config_file, args.opts, ckpt, out)
        if diff > 1e-3:
            print("error: outputs differ", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
