#!/usr/bin/env python
"""End-to-end batch-1 inference benchmark of a config, optionally against a second one.

    python tools/benchmark.py --config-file configs/COCO-PanopticSegmentation/yoso_R_50_800.yaml \
        --compare-config-file COCO-PanopticSegmentation/panoptic_fpn_R_50_1x.yaml --input-size 800 1333

Times ``model(inputs)`` from the input dict to the panoptic output (post-processing included),
batch 1, after ``--warmup`` calls, with ``torch.cuda.synchronize()`` around every clock read on
GPU. With ``--compare-config-file`` both models run alternately in the same process, so machine
noise hits both alike: trust the ratio more than the absolute times. Weights are random unless
``--weights`` is given (configs' MODEL.WEIGHTS are ignored; nothing is downloaded). A config path
that is not a file is looked up in detectron2's model zoo. Trailing ``opts`` apply to both configs.

Reports median / p90 latency, FPS, the per-stage breakdown (the stages the meta-arch reports;
see fastpan_d2/engine/timing.py), parameters, FLOPs (fvcore, counted as multiply-adds like
detectron2's model zoo) and peak memory (CUDA: max allocated; CPU: peak RSS growth of a fresh
process from before the model is built to after one inference).
"""
import argparse
import json
import logging
import os
import subprocess
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fastpan_d2  # noqa: E402,F401
from fastpan_d2.engine import InferenceTimer, UserInputError, exit_on_user_error, format_timing, load_cfg  # noqa: E402


def resolve_config(path):
    if os.path.isfile(path):
        return path
    from detectron2 import model_zoo

    try:
        return model_zoo.get_config_file(path)
    except RuntimeError:
        raise UserInputError(f"config file does not exist (neither a file nor a model-zoo config): {path}")


def build(config_file, args):
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling import build_model

    opts = list(args.opts) + ["MODEL.WEIGHTS", "", "MODEL.DEVICE", args.device]
    cfg = load_cfg(resolve_config(config_file), opts)
    model = build_model(cfg)
    if args.weights:
        if not os.path.isfile(args.weights):
            raise UserInputError(f"weights file does not exist: {args.weights}")
        DetectionCheckpointer(model).load(args.weights)
    model.eval()
    return cfg, model


def make_inputs(args, seed=0):
    g = torch.Generator().manual_seed(seed)
    h, w = args.input_size
    image = torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8)
    return [{"image": image.to(args.device), "height": h, "width": w}]


def count_flops(model, inputs):
    """fvcore FLOPs (multiply-adds) of one inference, in G; falls back to torch's counter / 2."""
    try:
        from detectron2.utils.analysis import FlopCountAnalysis

        fca = FlopCountAnalysis(model, inputs)
        fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
        return fca.total() / 1e9, "fvcore"
    except Exception as e:  # tracing can fail on data-dependent control flow
        logging.getLogger(__name__).info("fvcore tracing failed (%s); using torch FlopCounterMode", e)
        from torch.utils.flop_counter import FlopCounterMode

        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(inputs)
        return counter.get_total_flops() / 2 / 1e9, "torch.utils.flop_counter/2"


def proc_status_mb(field):
    """A memory field of /proc/self/status ("VmRSS", "VmHWM") in MB; NaN where there is none."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def memory_probe(args):
    """Run in a fresh process: peak RSS growth from before building the model to after one inference.

    The peak is the process's own high-water mark (VmHWM), which exec resets. Not ``getrusage``'s
    ru_maxrss: Linux carries it over fork + exec, so a probe started by a benchmark process that
    already held ~2 GB reported that parent's size for every model."""
    before = proc_status_mb("VmRSS")
    _, model = build(args.config_file, args)
    with torch.no_grad():
        model(make_inputs(args))
    print(json.dumps({"peak_mem_mb": proc_status_mb("VmHWM") - before}))


def peak_memory_mb(config_file, args, model):
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        with torch.no_grad():
            model(make_inputs(args))
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / 2**20
    cmd = [sys.executable, os.path.abspath(__file__), "--memory-probe", "--config-file", config_file,
           "--input-size", *map(str, args.input_size), "--device", args.device]
    if args.weights:
        cmd += ["--weights", args.weights]
    out = subprocess.run(cmd + list(args.opts), capture_output=True, text=True)
    if out.returncode != 0:
        logging.getLogger(__name__).warning("memory probe failed: %s", out.stderr[-2000:])
        return float("nan")
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mem_mb"]


def benchmark(args):
    configs = [args.config_file] + ([args.compare_config_file] if args.compare_config_file else [])
    built = [build(c, args) for c in configs]
    timers = [InferenceTimer(m, warmup=args.warmup, device=args.device) for _, m in built]
    inputs = make_inputs(args)
    with torch.no_grad():
        for t in timers:
            t.__enter__()
        try:
            for _ in range(args.warmup + args.iters):
                for _, model in built:
                    model(inputs)
        finally:
            for t in timers:
                t.__exit__(None, None, None)
    reports = []
    for config_file, (cfg, model), timer in zip(configs, built, timers):
        s = timer.summary(gather=False)
        gflops, counter = (float("nan"), "skipped") if args.no_flops else count_flops(model, inputs)
        reports.append({
            "config": config_file,
            "meta_arch": cfg.MODEL.META_ARCHITECTURE,
            "input_size": list(args.input_size),
            "device": args.device,
            "latency_ms_median": s["latency_ms_median"],
            "latency_ms_p90": s["latency_ms_p90"],
            "fps": s["fps"],
            "stages_ms": s["stages_ms"],
            "params": int(sum(p.numel() for p in model.parameters())),
            "gflops": gflops,
            "flop_counter": counter,
            "peak_mem_mb": float("nan") if args.no_memory else peak_memory_mb(config_file, args, model),
            "iters": args.iters,
        })
        print(f"[{'ab'[len(reports) - 1]}] {config_file} ({cfg.MODEL.META_ARCHITECTURE}) at "
              f"{args.input_size[0]}x{args.input_size[1]} on {args.device}")
        print("    " + format_timing(s))
        r = reports[-1]
        print(f"    params {r['params'] / 1e6:.2f} M, {r['gflops']:.1f} GFLOPs ({counter}), "
              f"peak memory {r['peak_mem_mb']:.0f} MB")
    result = {"a": reports[0]}
    if len(reports) == 2:
        result["b"] = reports[1]
        result["ratio_latency_a_over_b"] = reports[0]["latency_ms_median"] / reports[1]["latency_ms_median"]
        print(f"ratio latency a/b: {result['ratio_latency_a_over_b']:.3f} "
              f"(a is {1 / result['ratio_latency_a_over_b']:.2f}x as fast as b)")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True)
    p.add_argument("--compare-config-file", default=None)
    p.add_argument("--input-size", nargs=2, type=int, default=[800, 1333], metavar=("H", "W"))
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--weights", default=None)
    p.add_argument("--json", default=None)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--no-flops", action="store_true")
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--memory-probe", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("opts", nargs=argparse.REMAINDER, default=[])
    args = p.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("--device cuda asked for, but CUDA is not available")
    if args.iters < 1:
        p.error("--iters must be >= 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.memory_probe:
        return exit_on_user_error(memory_probe, args)
    return exit_on_user_error(benchmark, args)


if __name__ == "__main__":
    main()
