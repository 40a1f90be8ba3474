#!/usr/bin/env python
"""Time the deformable convolution's implementations on the layer shapes a config builds.

    python tools/benchmark_deform_conv.py --config-file configs/COCO-PanopticSegmentation/yoso_R_50_800.yaml \
        --config-file configs/COCO-PanopticSegmentation/lpsnet_R_50_800.yaml --input-size 800 1333

The model of each config is built and run once on a random image of ``--input-size`` to record
the input and weight shape of every ``ModulatedDeformConv2d`` call; every distinct shape is then
timed (median of ``--iters`` calls, batch 1, random offsets ~N(0, 2²) px and mask ~U(0, 1)) for

* inference, float32: "gather" (the CPU default), "grid_sample" (the previous CPU path),
  "torchvision" (its CPU kernel) and a dense 3x3 ``conv2d`` of the same shape (the floor);
* inference under CPU autocast (bfloat16): "gather", "grid_sample", and the dense conv;
* with ``--backward``: forward + backward, float32, "gather" / "grid_sample" / "torchvision".

Prints a table (ms and speed-ups of "gather") and writes it to ``--json``.
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fastpan_d2  # noqa: E402,F401
from fastpan_d2.engine import exit_on_user_error, load_cfg  # noqa: E402
from fastpan_d2.modeling.common.deform_conv import ModulatedDeformConv2d, modulated_deform_conv2d  # noqa: E402


def layer_shapes(config_file, input_size):
    """Distinct (C_in, C_out, H, W, kernel, stride, padding, dilation) of the config's deformable convs."""
    from detectron2.modeling import build_model

    cfg = load_cfg(config_file, ["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu"])
    model = build_model(cfg).eval()
    shapes = []

    def record(module, inputs):
        x = inputs[0]
        shape = (x.shape[1], module.out_channels, x.shape[2], x.shape[3], module.kernel_size[0], module.stride[0],
                 module.padding[0], module.dilation[0])
        if shape not in shapes:
            shapes.append(shape)

    for m in model.modules():
        if isinstance(m, ModulatedDeformConv2d):
            m.register_forward_pre_hook(record)
    h, w = input_size
    with torch.no_grad():
        model([{"image": torch.randint(0, 256, (3, h, w), dtype=torch.uint8), "height": h, "width": w}])
    return cfg.MODEL.META_ARCHITECTURE, shapes


def median_ms(fn, iters):
    fn()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2] * 1000.0


def time_shape(shape, iters, backward):
    cin, cout, h, w, k, s, p, d = shape
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, cin, h, w, generator=g)
    ho, wo = (h + 2 * p - d * (k - 1) - 1) // s + 1, (w + 2 * p - d * (k - 1) - 1) // s + 1
    offset = 2 * torch.randn(1, 2 * k * k, ho, wo, generator=g)
    mask = torch.rand(1, k * k, ho, wo, generator=g)
    weight = torch.randn(cout, cin, k, k, generator=g) / (cin * k * k) ** 0.5

    def deform(impl, xx=x):
        return lambda: modulated_deform_conv2d(xx, offset, mask, weight, None, s, p, d, impl=impl)

    def dense(xx=x):
        return lambda: F.conv2d(xx, weight, None, s, p, d)

    x_cl = x.to(memory_format=torch.channels_last)
    row = {}
    with torch.no_grad():
        for impl in ("gather", "grid_sample", "torchvision"):
            row[f"fp32_{impl}"] = median_ms(deform(impl), iters)
        row["fp32_dense_conv"] = median_ms(dense(x_cl), iters)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            for impl in ("gather", "grid_sample"):
                row[f"bf16_{impl}"] = median_ms(deform(impl), iters)
            row["bf16_dense_conv"] = median_ms(dense(x_cl), iters)
    if backward:
        for impl in ("gather", "grid_sample", "torchvision"):
            xs = [t.clone().requires_grad_() for t in (x, offset, mask, weight)]

            def step(impl=impl, xs=xs):
                y = modulated_deform_conv2d(xs[0], xs[1], xs[2], xs[3], None, s, p, d, impl=impl)
                y.sum().backward()

            row[f"fp32_fwd_bwd_{impl}"] = median_ms(step, max(1, iters // 2))
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", action="append", required=True)
    p.add_argument("--input-size", nargs=2, type=int, default=[800, 1333], metavar=("H", "W"))
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--backward", action="store_true")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    rows = []
    for config_file in args.config_file:
        arch, shapes = exit_on_user_error(layer_shapes, config_file, args.input_size)
        for shape in shapes:
            row = {"config": config_file, "meta_arch": arch, "shape": list(shape),
                   **time_shape(shape, args.iters, args.backward)}
            rows.append(row)
            cin, cout, h, w = shape[:4]
            speedups = (f"gather x{row['fp32_grid_sample'] / row['fp32_gather']:.2f} vs grid_sample, "
                        f"x{row['fp32_torchvision'] / row['fp32_gather']:.2f} vs torchvision, "
                        f"{row['fp32_gather'] / row['fp32_dense_conv']:.2f} of a dense conv; bf16: "
                        f"x{row['fp32_grid_sample'] / row['bf16_gather']:.2f} vs fp32 grid_sample, "
                        f"x{row['bf16_grid_sample'] / row['bf16_gather']:.2f} vs bf16 grid_sample, "
                        f"{row['bf16_gather'] / row['bf16_dense_conv']:.2f} of a bf16 dense conv")
            times = ", ".join(f"{k} {v:.1f}" for k, v in row.items() if k.startswith(("fp32", "bf16")))
            print(f"{arch} {cin}->{cout} at {h}x{w} (k{shape[4]} s{shape[5]}): {times} ms\n    {speedups}", flush=True)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return rows


if __name__ == "__main__":
    main()
