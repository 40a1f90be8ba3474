"""CUDA-timed inference measurement used by evaluation and ``tools/benchmark.py``.

``InferenceTimer(model)`` hooks ``model``'s forward: every call is timed from the input dicts to
the panoptic output (``torch.cuda.synchronize()`` before each clock read on GPU, a monotonic
clock on CPU) and split into the stages the meta-arch reports with
``fastpan_d2.modeling.common.stage_timer.timed_stage``. Models that report no stages (detectron2's
own Panoptic FPN, say) are instrumented from outside by ``instrument_stages``: ``preprocess_image``
is "preprocess", ``backbone`` is "backbone", the heads are "heads", and the rest of the call,
panoptic merging included, is "postprocess". The first ``warmup`` calls are not counted.
"""
import logging
import types

import numpy as np
import torch
from detectron2.utils import comm

from ..modeling.common.stage_timer import STAGES, StageRecorder, timed_stage

logger = logging.getLogger(__name__)

_HEAD_ATTRS = ("sem_seg_head", "proposal_generator", "roi_heads", "head")


def _unwrap(model):
    return model.module if hasattr(model, "module") and isinstance(model.module, torch.nn.Module) else model


def reports_own_stages(model):
    return type(_unwrap(model)).__module__.startswith("fastpan_d2.")


def instrument_stages(model):
    """Wrap a foreign detectron2 meta-arch's parts in ``timed_stage`` (idempotent)."""
    model = _unwrap(model)
    if getattr(model, "_fastpan_instrumented", False):
        return []
    handles = []

    def time_module(module, stage):
        handles.append(module.register_forward_pre_hook(lambda m, i: _open_stage(m, stage)))
        handles.append(module.register_forward_hook(lambda m, i, o: _close_stage(m)))

    if isinstance(getattr(model, "backbone", None), torch.nn.Module):
        time_module(model.backbone, "backbone")
    for attr in _HEAD_ATTRS:
        if isinstance(getattr(model, attr, None), torch.nn.Module):
            time_module(getattr(model, attr), "heads")
    if hasattr(model, "preprocess_image"):
        original = model.preprocess_image

        def preprocess_image(self, *a, **k):
            with timed_stage("preprocess"):
                return original(*a, **k)

        model.preprocess_image = types.MethodType(preprocess_image, model)
    model._fastpan_instrumented = True
    return handles


def _open_stage(module, stage):
    ctx = timed_stage(stage)
    ctx.__enter__()
    module.__dict__.setdefault("_fastpan_stage_ctx", []).append(ctx)


def _close_stage(module):
    module.__dict__["_fastpan_stage_ctx"].pop().__exit__(None, None, None)


class InferenceTimer:
    """Times every forward of ``model``; use as a context manager around inference."""

    def __init__(self, model, warmup=3, device=None):
        self.model = model
        self.warmup = warmup
        if device is None:
            p = next(model.parameters(), None)
            device = p.device if p is not None else "cpu"
        self.recorder = StageRecorder(device)
        self.foreign = not reports_own_stages(model)
        self.calls = 0
        self.totals = []  # seconds per image
        self.stages = []  # {stage: seconds} per image
        self._handles = []
        self._recording = False

    def __enter__(self):
        if self.foreign:
            self._handles += instrument_stages(self.model)
        self._handles.append(self.model.register_forward_pre_hook(self._pre))
        self._handles.append(self.model.register_forward_hook(self._post))
        return self

    def __exit__(self, *exc):
        if self._recording:  # a forward raised
            self.recorder.__exit__(*exc)
            self._recording = False
        for h in self._handles:
            h.remove()
        self._handles = []

    # The recorder is active only inside this model's forward, so timers of several models
    # (benchmark.py's A/B run) never record into each other.
    def _pre(self, module, inputs):
        self.recorder.__enter__()
        self._recording = True
        self.recorder.pop()
        self._start = self.recorder.now()

    def _post(self, module, inputs, outputs):
        total = self.recorder.now() - self._start
        stages = self.recorder.pop()
        self.recorder.__exit__(None, None, None)
        self._recording = False
        self.calls += 1
        if self.calls <= self.warmup:
            return
        n = max(1, len(inputs[0]) if inputs and isinstance(inputs[0], (list, tuple)) else 1)
        # Unreported time: merging for a foreign model, Python glue for one of ours.
        key = "postprocess" if self.foreign else "other"
        stages[key] = stages.get(key, 0.0) + max(total - sum(stages.values()), 0.0)
        for _ in range(n):
            self.totals.append(total / n)
            self.stages.append({k: v / n for k, v in stages.items()})

    def summary(self, gather=True):
        """``{"latency_ms_median", "latency_ms_p90", "fps", "num_images", "stages_ms": {stage: median ms}}``
        over all processes (gathered to the main process)."""
        totals, stages = self.totals, self.stages
        if gather and comm.get_world_size() > 1:
            all_t = comm.all_gather(totals)
            all_s = comm.all_gather(stages)
            totals = [t for part in all_t for t in part]
            stages = [s for part in all_s for s in part]
        return summarize(totals, stages)


def summarize(totals, stages):
    if not totals:
        return {"latency_ms_median": float("nan"), "latency_ms_p90": float("nan"), "fps": 0.0,
                "num_images": 0, "stages_ms": {}}
    t = np.asarray(totals) * 1000.0
    names = [s for s in STAGES + ("other",) if any(s in d for d in stages)]
    names += sorted({k for d in stages for k in d} - set(names))
    med = float(np.median(t))
    return {
        "latency_ms_median": med,
        "latency_ms_p90": float(np.percentile(t, 90)),
        "fps": 1000.0 / med if med > 0 else float("inf"),
        "num_images": int(len(t)),
        "stages_ms": {k: float(np.median([d.get(k, 0.0) for d in stages]) * 1000.0) for k in names},
    }


def format_timing(summary):
    stages = ", ".join(f"{k} {v:.1f}" for k, v in summary["stages_ms"].items())
    return (
        f"latency median {summary['latency_ms_median']:.1f} ms, p90 {summary['latency_ms_p90']:.1f} ms, "
        f"{summary['fps']:.2f} FPS over {summary['num_images']} images; stages (median ms): {stages}"
    )
