#!/usr/bin/env python
"""End-to-end batch-1 inference (or training-iteration) benchmark of a config, optionally against a second one.

    python tools/benchmark.py --config-file configs/COCO-PanopticSegmentation/yoso_R_50_800.yaml \
        --compare-config-file COCO-PanopticSegmentation/panoptic_fpn_R_50_1x.yaml --input-size 800 1333

Times ``model(inputs)`` from the input dict to the panoptic output (post-processing included),
batch 1, after ``--warmup`` calls, with ``torch.cuda.synchronize()`` around every clock read on
GPU. With ``--compare-config-file`` both models run alternately in the same process, so machine
noise hits both alike: trust the ratio more than the absolute times. Weights are random unless
``--weights`` is given (configs' MODEL.WEIGHTS are ignored; nothing is downloaded). A config path
that is not a file is looked up in detectron2's model zoo. Trailing ``opts`` apply to both configs.

Reports median / p90 latency, FPS, the per-stage breakdown (the stages the meta-arch reports;
see fastpan_d2/engine/timing.py), parameters, GFLOPs (G multiply-adds of the timed inference,
attention and deformable convs included: fastpan_d2/utils/analysis.py), per top-level module
too, and peak memory (CUDA: max allocated; CPU: peak RSS growth of a fresh process from before
the model is built to after one inference); ``--profile N``: the N operators with the most self
CPU time in one more inference (torch.profiler). With B: the latency ratio A/B and the FLOP
efficiency of A against B, (GFLOPs_A / latency_A) / (GFLOPs_B / latency_B): below 1, A spends
time on something other than arithmetic, relative to B.

``--fast`` prepares BOTH models with the fast inference path (engine/fast_inference.py: BatchNorm
folded into the convs, channels-last, autocast: bfloat16 on CPU where supported, float16 on CUDA),
so the ratio compares like with like.

``--train`` times training iterations instead (forward with losses + backward + optimizer step,
the config's own optimizer, ``--batch-size`` images, default 2) at ``--input-size``, A and B
alternately. The batch is drawn once from the synthetic dataset generated at that size, with its
categories mapped onto each config's training dataset's classes, so every network trains on the
label space its config builds (e.g. COCO's 133 classes) at exactly the given size. The optimizer
steps with learning rate 0: the step costs what it costs, but the weights do not move, so every
timed iteration does the same work and random weights cannot diverge (a random R-50 with
FrozenBN does within two steps at the paper's learning rate).
"""
import argparse
import json
import logging
import os
import subprocess
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fastpan_d2  # noqa: E402,F401
from fastpan_d2.engine import (  # noqa: E402
    InferenceTimer,
    UserInputError,
    apply_fast_inference,
    exit_on_user_error,
    format_timing,
    load_cfg,
)
from fastpan_d2.engine.predictor import resolve_config_file  # noqa: E402
from fastpan_d2.utils.analysis import count_flops  # noqa: E402

FLOP_COUNTER = "fastpan_d2.utils.analysis (multiply-adds)"


def build(config_file, args):
    """(cfg, model): eval mode (prepared with the fast path under --fast), or train mode under --train."""
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling import build_model

    opts = list(args.opts) + ["MODEL.WEIGHTS", "", "MODEL.DEVICE", args.device]
    cfg = load_cfg(resolve_config_file(config_file), opts)
    model = build_model(cfg)
    if args.weights:
        if not os.path.isfile(args.weights):
            raise UserInputError(f"weights file does not exist: {args.weights}")
        DetectionCheckpointer(model).load(args.weights)
    if getattr(args, "train", False):
        model.train()
    elif args.fast:
        apply_fast_inference(model, fold=True, channels_last=True, amp=True)
    else:
        model.eval()
    return cfg, model


def make_inputs(args, seed=0):
    g = torch.Generator().manual_seed(seed)
    h, w = args.input_size
    image = torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8)
    return [{"image": image.to(args.device), "height": h, "width": w}]


def gflops_of(model, inputs):
    """(G multiply-adds of one inference, {top-level module: G}); "(meta-arch)" is the rest."""
    total, by_module = count_flops(model, inputs, by_module_depth=1)
    children = {name: v / 1e9 for name, v in by_module.items() if name}
    rest = total / 1e9 - sum(children.values())
    if rest > 1e-6:
        children["(meta-arch)"] = rest
    return total / 1e9, children


def profile_top(model, inputs, top):
    """The ``top`` operators by self CPU time of one inference (torch.profiler), with their share."""
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
        model(inputs)
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    return [{"op": e.key, "self_ms": e.self_cpu_time_total / 1e3, "share": e.self_cpu_time_total / total,
             "calls": e.count} for e in events[:top]]


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
    if args.fast:
        cmd += ["--fast"]
    out = subprocess.run(cmd + list(args.opts), capture_output=True, text=True)
    if out.returncode != 0:
        logging.getLogger(__name__).warning("memory probe failed: %s", out.stderr[-2000:])
        return float("nan")
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mem_mb"]


def _result(reports, args):
    """{"a": ..., ["b": ..., ratios of A against B]}, printed and written to --json."""
    result = {"a": reports[0]}
    if len(reports) == 2:
        a, b = result["a"], result["b"] = reports
        result["ratio_latency_a_over_b"] = a["latency_ms_median"] / b["latency_ms_median"]
        print(f"ratio latency a/b: {result['ratio_latency_a_over_b']:.3f} "
              f"(a is {1 / result['ratio_latency_a_over_b']:.2f}x as fast as b)")
        if "gflops" in a:
            eff = (a["gflops"] / a["latency_ms_median"]) / (b["gflops"] / b["latency_ms_median"])
            result["flop_efficiency_a_over_b"] = eff
            print(f"FLOP efficiency a/b: {eff:.3f} (a: {1e3 * a['gflops'] / a['latency_ms_median']:.1f}, "
                  f"b: {1e3 * b['gflops'] / b['latency_ms_median']:.1f} GFLOP/s)")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


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
        gflops, by_module = (float("nan"), {}) if args.no_flops else gflops_of(model, inputs)
        reports.append({
            "config": config_file,
            "meta_arch": cfg.MODEL.META_ARCHITECTURE,
            "mode": "inference",
            "input_size": list(args.input_size),
            "device": args.device,
            "fast": {k: str(v) for k, v in getattr(model, "_fast_inference", {}).items()} if args.fast else None,
            "latency_ms_median": s["latency_ms_median"],
            "latency_ms_p90": s["latency_ms_p90"],
            "fps": s["fps"],
            "stages_ms": s["stages_ms"],
            "params": int(sum(p.numel() for p in model.parameters())),
            "gflops": gflops,
            "gflops_by_module": by_module,
            "flop_counter": "skipped" if args.no_flops else FLOP_COUNTER,
            "peak_mem_mb": float("nan") if args.no_memory else peak_memory_mb(config_file, args, model),
            "iters": args.iters,
        })
        if args.profile:
            reports[-1]["profile_top"] = profile_top(model, inputs, args.profile)
        r = reports[-1]
        print(f"[{'ab'[len(reports) - 1]}] {config_file} ({cfg.MODEL.META_ARCHITECTURE}) at "
              f"{args.input_size[0]}x{args.input_size[1]} on {args.device}{' (--fast)' if args.fast else ''}")
        print("    " + format_timing(s))
        modules = ", ".join(f"{k} {v:.1f}" for k, v in by_module.items())
        print(f"    params {r['params'] / 1e6:.2f} M, {gflops:.1f} GFLOPs ({modules}), "
              f"{1e3 * gflops / s['latency_ms_median']:.1f} GFLOP/s, peak memory {r['peak_mem_mb']:.0f} MB")
        for e in r.get("profile_top", []):
            print(f"      {e['share']:6.1%} {e['self_ms']:9.1f} ms {e['calls']:6d}x  {e['op']}")
    return _result(reports, args)


# ------------------------------------------------------------------------------------ --train
def _remap_to(meta, dicts, separated):
    """Synthetic dataset dicts with their categories mapped onto the classes of ``meta``: the
    synthetic things 0..4 become the dataset's first five thing classes, the stuff classes its
    first stuff classes. The separated form (thing ids 0.., stuff PNG 1..) fits as it is."""
    if separated:
        return dicts
    from fastpan_d2.data.categories import PanopticCategories
    from fastpan_d2.data.datasets.synthetic import SYNTHETIC_CATEGORIES

    target = PanopticCategories.from_metadata(meta)
    n_things = sum(c["isthing"] for c in SYNTHETIC_CATEGORIES)
    if target.num_things < n_things or target.num_stuff < len(SYNTHETIC_CATEGORIES) - n_things:
        raise UserInputError(f"--train needs a dataset with at least {n_things} thing and "
                             f"{len(SYNTHETIC_CATEGORIES) - n_things} stuff classes")
    out = []
    for d in dicts:
        d = dict(d)
        d["segments_info"] = [
            dict(s, category_id=target.thing_ids[s["category_id"]] if s["isthing"]
                 else target.stuff_ids[s["category_id"] - n_things])
            for s in d["segments_info"]
        ]
        out.append(d)
    return out


def training_batch(cfg, args):
    """``--batch-size`` mapped training dicts of size ``--input-size`` in ``cfg``'s label space."""
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from fastpan_d2.data.datasets.registration import unregister
    from fastpan_d2.data.datasets.synthetic import configure_synthetic
    from fastpan_d2.engine import build_dataset_mapper

    h, w = args.input_size
    train_name = cfg.DATASETS.TRAIN[0]
    separated = train_name.endswith("_separated")
    configure_synthetic(image_size=(h, w), num_train=args.batch_size, num_val=1)
    dicts = DatasetCatalog.get("fastpan_shapes_train" + ("_separated" if separated else ""))
    meta = MetadataCatalog.get(train_name)
    name = "fastpan_benchmark_train"
    unregister(name)
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).set(**{k: v for k, v in meta.as_dict().items() if k != "name"})
    cfg = cfg.clone()
    cfg.defrost()
    cfg.DATASETS.TRAIN = (name,)
    # exactly the generated size: no resize, crop or jitter
    cfg.INPUT.AUGMENTATION = "ResizeShortestEdge"
    cfg.INPUT.MIN_SIZE_TRAIN = (min(h, w),)
    cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING = "choice"
    cfg.INPUT.MAX_SIZE_TRAIN = max(h, w)
    cfg.INPUT.CROP.ENABLED = False
    cfg.INPUT.MASK_FORMAT = "bitmask"  # the synthetic instances are RLE
    mapper = build_dataset_mapper(cfg, is_train=True)
    batch = [mapper(d) for d in _remap_to(meta, dicts, separated)]
    for x in batch:
        if tuple(x["image"].shape[-2:]) != (h, w):
            raise AssertionError(f"training batch is {tuple(x['image'].shape[-2:])}, not {(h, w)}")
    return batch


def _sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def benchmark_train(args):
    from detectron2.utils.events import EventStorage
    from fastpan_d2.engine import build_optimizer

    configs = [args.config_file] + ([args.compare_config_file] if args.compare_config_file else [])
    built = [build(c, args) for c in configs]
    runs = []
    for cfg, model in built:
        batch = training_batch(cfg, args)
        optimizer = build_optimizer(cfg, model)
        for group in optimizer.param_groups:  # the step's arithmetic runs; the weights stay put
            group["lr"] = 0.0
        runs.append((model, optimizer, batch, []))
    with EventStorage(0) as storage:  # detectron2's models log training statistics into it
        for i in range(args.warmup + args.iters):
            for model, optimizer, batch, times in runs:
                _sync(args.device)
                start = time.perf_counter()
                losses = model(batch)
                total = sum(losses.values())
                optimizer.zero_grad(set_to_none=True)
                total.backward()
                optimizer.step()
                _sync(args.device)
                if i >= args.warmup:
                    times.append(time.perf_counter() - start)
            storage.iter += 1
    reports = []
    for config_file, (cfg, model), (_, _, _, times) in zip(configs, built, runs):
        t = np.asarray(times) * 1000.0
        reports.append({
            "config": config_file,
            "meta_arch": cfg.MODEL.META_ARCHITECTURE,
            "mode": "train",
            "input_size": list(args.input_size),
            "batch_size": args.batch_size,
            "device": args.device,
            "optimizer": cfg.SOLVER.OPTIMIZER,
            "latency_ms_median": float(np.median(t)),
            "latency_ms_p90": float(np.percentile(t, 90)),
            "params": int(sum(p.numel() for p in model.parameters())),
            "iters": args.iters,
        })
        r = reports[-1]
        print(f"[{'ab'[len(reports) - 1]}] {config_file} ({cfg.MODEL.META_ARCHITECTURE}) training iteration, "
              f"batch {args.batch_size} at {args.input_size[0]}x{args.input_size[1]} on {args.device}")
        print(f"    latency median {r['latency_ms_median']:.1f} ms, p90 {r['latency_ms_p90']:.1f} ms over "
              f"{len(t)} iterations; params {r['params'] / 1e6:.2f} M")
    return _result(reports, args)


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
    p.add_argument("--fast", action="store_true",
                   help="inference: fold BatchNorm, channels-last and autocast, for A and B alike")
    p.add_argument("--train", action="store_true", help="time training iterations instead of inference")
    p.add_argument("--batch-size", type=int, default=2, help="images per training iteration (--train)")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="inference: also print the N operators with the most self CPU time (torch.profiler)")
    p.add_argument("--no-flops", action="store_true")
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--memory-probe", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("opts", nargs=argparse.REMAINDER, default=[])
    args = p.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("--device cuda asked for, but CUDA is not available")
    if args.iters < 1:
        p.error("--iters must be >= 1")
    if args.train and args.fast:
        p.error("--fast is an inference path; --train times plain (float32) training")
    if args.batch_size < 1:
        p.error("--batch-size must be >= 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.memory_probe:
        return exit_on_user_error(memory_probe, args)
    return exit_on_user_error(benchmark_train if args.train else benchmark, args)


if __name__ == "__main__":
    main()
