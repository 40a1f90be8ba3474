"""tools/benchmark.py's FLOP efficiency, --fast and --train on tiny inputs."""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SYN = "configs/Synthetic-PanopticSegmentation/{}.yaml"


def run(args, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", DETECTRON2_DATASETS=str(tmp_path / "datasets"))
    proc = subprocess.run([sys.executable, "tools/benchmark.py", *args], cwd=REPO, capture_output=True, text=True,
                          env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_fast_path_for_both_and_flop_efficiency(tmp_path):
    out = tmp_path / "fast.json"
    stdout = run(["--config-file", SYN.format("lpsnet"), "--compare-config-file", SYN.format("panoptic_fpn"),
                  "--input-size", "64", "96", "--iters", "2", "--warmup", "1", "--no-memory", "--fast",
                  "--json", str(out)], tmp_path)
    assert "FLOP efficiency a/b" in stdout and stdout.count("(--fast)") == 2
    r = json.loads(out.read_text())
    for key in ("a", "b"):
        assert r[key]["fast"]["channels_last"] == "True" and int(r[key]["fast"]["folded_batchnorms"]) > 0
        assert r[key]["gflops"] > 0
        modules = r[key]["gflops_by_module"]
        assert "backbone" in modules and sum(modules.values()) == pytest.approx(r[key]["gflops"])
    a, b = r["a"], r["b"]
    assert r["flop_efficiency_a_over_b"] == pytest.approx(
        (a["gflops"] / a["latency_ms_median"]) / (b["gflops"] / b["latency_ms_median"]))


def test_train_iterations_for_a_and_b(tmp_path):
    out = tmp_path / "train.json"
    stdout = run(["--config-file", SYN.format("yoso"), "--compare-config-file", SYN.format("panoptic_fpn"),
                  "--input-size", "64", "80", "--iters", "2", "--warmup", "1", "--train", "--json", str(out)],
                 tmp_path)
    assert "training iteration, batch 2 at 64x80" in stdout
    r = json.loads(out.read_text())
    assert set(r) == {"a", "b", "ratio_latency_a_over_b"}
    for key in ("a", "b"):
        assert r[key]["mode"] == "train" and r[key]["batch_size"] == 2 and r[key]["latency_ms_median"] > 0
    assert r["a"]["optimizer"] == "ADAMW" and r["b"]["optimizer"] == "SGD"


def test_training_batch_maps_synthetic_classes_onto_the_config_dataset(tmp_path, monkeypatch):
    """A COCO config trains on COCO's label space: synthetic things -> COCO thing ids, stuff ->
    COCO stuff ids; images exactly at the asked size."""
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "datasets"))
    sys.path.insert(0, os.path.join(REPO, "tools"))
    import benchmark
    from detectron2.data import MetadataCatalog

    from fastpan_d2.data.categories import PanopticCategories

    args = benchmark.parse_args(["--config-file", "x", "--train", "--input-size", "48", "72"])
    cfg = benchmark.load_cfg(os.path.join(REPO, "configs/COCO-PanopticSegmentation/lpsnet_R_50_800.yaml"))
    batch = benchmark.training_batch(cfg, args)
    assert len(batch) == 2
    cats = PanopticCategories.from_metadata(MetadataCatalog.get(cfg.DATASETS.TRAIN[0]))
    for x in batch:
        assert tuple(x["image"].shape) == (3, 48, 72)
        labels = set(x["sem_seg"].unique().tolist()) - {255}
        assert labels and labels <= set(cats.thing_ids[:5]) | set(cats.stuff_ids[:4])
        assert labels & set(cats.stuff_ids[:4])
        assert all(0 <= c < 5 for c in x["instances"].gt_classes.tolist())


def test_compare_fast_inference_agreement_by_hand():
    """tools/compare_fast_inference.py's measures on a hand-built pair of panoptic outputs."""
    import torch

    sys.path.insert(0, os.path.join(REPO, "tools"))
    from compare_fast_inference import compare_outputs

    a = torch.tensor([[1, 1, 2, 2], [1, 1, 2, 2], [0, 3, 3, 3]])
    b = torch.tensor([[5, 5, 5, 2], [5, 5, 2, 2], [0, 4, 4, 4]])  # ids differ; segment 1 grew by a pixel
    info_a = [{"id": 1, "category_id": 7}, {"id": 2, "category_id": 0}, {"id": 3, "category_id": 3}]
    info_b = [{"id": 5, "category_id": 7}, {"id": 2, "category_id": 0}, {"id": 4, "category_id": 1}]
    r = compare_outputs((a, info_a), (b, info_b))
    # categories: the grown pixel (7 vs 0) and segment 3/4's three pixels (3 vs 1) differ
    assert r["pixels"] == 12 and r["category_same"] == 12 - 1 - 3
    # segments: 1<->5 (4 px), 2<->2 (3 px), 3<->4 (3 px), void<->void (1 px) are mutual best matches
    assert r["segment_same"] == 4 + 3 + 3 + 1
    # PQ-style matches (same category, IoU > 0.5): 1<->5 (4/5), 2<->2 (3/4); 3<->4 has another category
    assert (r["segments_a"], r["segments_b"], r["matched"]) == (3, 3, 2)
