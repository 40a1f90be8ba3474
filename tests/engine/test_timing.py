"""The inference timer: stages add up to the total, warm-up calls are not counted, and a model
that reports no stages (detectron2's own) is instrumented from outside."""
import time

import pytest
import torch
from torch import nn

from fastpan_d2.engine.timing import InferenceTimer, summarize
from fastpan_d2.modeling.common.stage_timer import active_recorder, timed_stage

SLEEP = {"preprocess": 0.004, "backbone": 0.012, "heads": 0.008, "postprocess": 0.006}


class ReportingModel(nn.Module):
    """Stands in for a fastpan_d2 meta-arch: reports its four stages."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, batched_inputs):
        for stage, seconds in SLEEP.items():
            with timed_stage(stage):
                time.sleep(seconds)
        return [{"panoptic_seg": (torch.zeros(2, 2, dtype=torch.int32), [])} for _ in batched_inputs]


ReportingModel.__module__ = "fastpan_d2.modeling.fake"


class Sleep(nn.Module):
    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds

    def forward(self, x):
        time.sleep(self.seconds)
        return x


class ForeignModel(nn.Module):
    """Shaped like detectron2's GeneralizedRCNN / PanopticFPN: preprocess_image, backbone, heads."""

    def __init__(self):
        super().__init__()
        self.backbone = Sleep(SLEEP["backbone"])
        self.roi_heads = Sleep(SLEEP["heads"] / 2)
        self.sem_seg_head = Sleep(SLEEP["heads"] / 2)

    def preprocess_image(self, x):
        time.sleep(SLEEP["preprocess"])
        return x

    def forward(self, batched_inputs):
        x = self.preprocess_image(batched_inputs)
        x = self.backbone(x)
        self.roi_heads(x)
        self.sem_seg_head(x)
        time.sleep(SLEEP["postprocess"])  # panoptic merging, not reported
        return x


@pytest.mark.parametrize("model_cls, unreported", [(ReportingModel, "other"), (ForeignModel, "postprocess")])
def test_stages_sum_to_total_and_warmup_is_skipped(model_cls, unreported):
    model = model_cls()
    with InferenceTimer(model, warmup=2) as timer:
        for _ in range(6):
            model([{"image": None}])
    assert active_recorder() is None
    assert len(timer.totals) == 4  # 6 calls - 2 warm-up
    for total, stages in zip(timer.totals, timer.stages):
        assert sum(stages.values()) == pytest.approx(total, rel=1e-6)
        for stage in ("preprocess", "backbone", "heads"):
            assert stages[stage] >= SLEEP[stage] * 0.95
        assert stages["postprocess"] >= SLEEP["postprocess"] * 0.95
    s = timer.summary()
    assert s["num_images"] == 4
    assert s["latency_ms_median"] >= 1000 * sum(SLEEP.values()) * 0.95
    assert s["fps"] == pytest.approx(1000.0 / s["latency_ms_median"])
    assert set(s["stages_ms"]) >= {"preprocess", "backbone", "heads", "postprocess"}
    if unreported == "other":
        assert s["stages_ms"]["other"] < 0.5 * s["latency_ms_median"]


def test_two_timers_do_not_record_into_each_other():
    a, b = ReportingModel(), ForeignModel()
    with InferenceTimer(a, warmup=0) as ta, InferenceTimer(b, warmup=0) as tb:
        for _ in range(2):
            a([{}])
            b([{}])
    for t in (ta, tb):
        for total, stages in zip(t.totals, t.stages):
            assert sum(stages.values()) == pytest.approx(total, rel=1e-6)
            assert total < 2 * sum(SLEEP.values()) + 0.05


def test_batch_of_two_counts_two_images():
    model = ReportingModel()
    with InferenceTimer(model, warmup=0) as timer:
        model([{}, {}])
    assert len(timer.totals) == 2
    assert timer.totals[0] == pytest.approx(timer.totals[1])


def test_no_recorder_means_no_recording():
    with timed_stage("backbone"):
        pass
    assert active_recorder() is None


def test_summarize_percentiles():
    s = summarize([0.01 * i for i in range(1, 11)], [{"backbone": 0.001 * i} for i in range(1, 11)])
    assert s["latency_ms_median"] == pytest.approx(55.0)
    assert s["latency_ms_p90"] == pytest.approx(91.0)
    assert s["stages_ms"]["backbone"] == pytest.approx(5.5)
