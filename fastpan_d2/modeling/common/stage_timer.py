"""Per-stage inference timing that every meta-arch reports to.

A meta-arch wraps each stage of its inference in ``timed_stage(name)`` with one of
``STAGES``. Nothing is measured (and nothing synchronizes) unless a ``StageRecorder`` is
active, so training and plain inference pay nothing. On CUDA the recorder synchronizes the
device before reading the clock, so a stage's time is the GPU time it launched.
"""
import contextlib
import time
from collections import defaultdict

import torch

STAGES = ("preprocess", "backbone", "heads", "postprocess")

_ACTIVE = []


class StageRecorder:
    """Collects ``{stage: seconds}`` for each call between ``begin()`` and ``end()``."""

    def __init__(self, device="cpu"):
        self.cuda = str(device).startswith("cuda") and torch.cuda.is_available()
        self.current = defaultdict(float)

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def now(self):
        self.sync()
        return time.perf_counter()

    def add(self, stage, seconds):
        self.current[stage] += seconds

    def pop(self):
        stages, self.current = dict(self.current), defaultdict(float)
        return stages

    def __enter__(self):
        _ACTIVE.append(self)
        return self

    def __exit__(self, *exc):
        _ACTIVE.remove(self)


def active_recorder():
    return _ACTIVE[-1] if _ACTIVE else None


@contextlib.contextmanager
def timed_stage(name):
    """Time the enclosed block as stage ``name`` if a recorder is active."""
    rec = active_recorder()
    if rec is None:
        yield
        return
    start = rec.now()
    try:
        yield
    finally:
        rec.add(name, rec.now() - start)
