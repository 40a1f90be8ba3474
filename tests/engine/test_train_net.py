"""train_net.py end to end on the synthetic data with detectron2's Panoptic FPN (the peer):
train, checkpoint, resume, --eval-only with PQ and timing, and two gloo processes on CPU."""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = "configs/Synthetic-PanopticSegmentation/panoptic_fpn.yaml"
SMALL = ["DATASETS.SYNTHETIC.NUM_TRAIN", "8", "DATASETS.SYNTHETIC.NUM_VAL", "3", "SOLVER.IMS_PER_BATCH", "2",
         "SOLVER.WARMUP_ITERS", "1", "TEST.TIMING.WARMUP", "1", "DATALOADER.NUM_WORKERS", "0"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("d2")
    e = dict(os.environ, DETECTRON2_DATASETS=str(root / "datasets"), OMP_NUM_THREADS="1")
    return e, root


def run(env, *args):
    proc = subprocess.run([sys.executable, "train_net.py", *args], cwd=REPO, env=env[0], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc.stdout + proc.stderr


def metrics(out_dir):
    with open(os.path.join(out_dir, "metrics.json")) as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def trained(env):
    out = str(env[1] / "train")
    log = run(env, "--config-file", CONFIG, *SMALL, "SOLVER.MAX_ITER", "3", "OUTPUT_DIR", out)
    return out, log


def test_train_saves_checkpoint_and_evaluates(trained):
    out, log = trained
    assert os.path.isfile(os.path.join(out, "model_final.pth"))
    with open(os.path.join(out, "last_checkpoint")) as f:
        assert f.read().strip() == "model_final.pth"
    final = metrics(out)[-1]
    pq = final["fastpan_shapes_val_separated/panoptic_seg/PQ"]
    assert 0.0 <= pq <= 100.0
    for key in ("latency_ms_median", "latency_ms_p90", "fps", "stage_backbone_ms", "stage_postprocess_ms"):
        assert final[f"fastpan_shapes_val_separated/timing/{key}"] > 0
    assert "Inference timing on fastpan_shapes_val_separated" in log


def test_resume_continues_from_checkpoint(trained, env):
    out, _ = trained
    log = run(env, "--config-file", CONFIG, "--resume", *SMALL, "SOLVER.MAX_ITER", "5", "OUTPUT_DIR", out,
              "TEST.TIMING.ENABLED", "False")
    assert "Starting training from iteration 3" in log
    iters = [m["iteration"] for m in metrics(out) if "total_loss" in m]
    assert max(iters) == 4


def test_eval_only_returns_pq_and_timing(trained, env, monkeypatch):
    out, _ = trained
    monkeypatch.setenv("DETECTRON2_DATASETS", env[0]["DETECTRON2_DATASETS"])
    sys.path.insert(0, REPO)
    import train_net
    from detectron2.engine import default_argument_parser

    args = default_argument_parser().parse_args(
        ["--config-file", os.path.join(REPO, CONFIG), "--eval-only", *SMALL,
         "MODEL.WEIGHTS", os.path.join(out, "model_final.pth"), "OUTPUT_DIR", str(env[1] / "eval")])
    results = train_net.main(args)["fastpan_shapes_val_separated"]
    assert set(results["panoptic_seg"]) >= {"PQ", "SQ", "RQ", "PQ_th", "PQ_st"}
    t = results["timing"]
    assert t["num_images"] == 2  # 3 val images, 1 warm-up
    stages = sum(v for k, v in t.items() if k.startswith("stage_"))
    assert stages == pytest.approx(t["latency_ms_median"], rel=0.35)  # medians of parts vs median of sums


def test_two_gloo_processes_on_cpu(env):
    out = str(env[1] / "ddp")
    log = run(env, "--config-file", CONFIG, "--num-gpus", "2", *SMALL, "SOLVER.MAX_ITER", "2",
              "OUTPUT_DIR", out, "MODEL.DEVICE", "cpu")
    assert "DDP over 2 processes (cpu)" in log
    assert os.path.isfile(os.path.join(out, "model_final.pth"))
    assert "fastpan_shapes_val_separated/panoptic_seg/PQ" in metrics(out)[-1]
