"""A short training run through the engine on the synthetic data: PQ must rise well above an
untrained model's.

CPU-sized: a 12-image training split of fastpan_shapes at 64 px, a small decoder (d = 64, n = 20),
150 AdamW iterations; evaluated with COCOPanopticEvaluator on those training images (a set-prediction
model from scratch needs far more than a few hundred iterations to generalise to unseen images; this
checks that the whole pipeline — targets, matching, losses, optimizer, merge, evaluator — learns).
Things must be found too: with the synthetic config's shared heads and auxiliary semantic loss,
three runs here gave PQ 40 / 27 / 32 and PQ_th 15.2 / 7.3 / 13.1 (from 0; not bit-reproducible on
CPU); before them things were not learned at all on the full synthetic budget.
"""
import torch

from tests.train_utils import pq_before_and_after

ITERS = 150


def test_short_training_raises_pq(tmp_path, repo_root):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # several test processes share 2 cores: one thread each is fastest
    try:
        opts = [
            "OUTPUT_DIR", str(tmp_path),
            "DATASETS.SYNTHETIC.NUM_TRAIN", "12", "DATASETS.SYNTHETIC.NUM_VAL", "4",
            "DATASETS.TEST", "('fastpan_shapes_train',)",
            "SOLVER.MAX_ITER", str(ITERS), "SOLVER.STEPS", "(120,)", "SOLVER.WARMUP_ITERS", "10",
            "SOLVER.BASE_LR", "0.001",
            "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "64",
            "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "64",
            "MODEL.YOSO.HIDDEN_DIM", "64", "MODEL.YOSO.NUM_PROPOSALS", "20", "MODEL.YOSO.DIM_FEEDFORWARD", "128",
            "MODEL.YOSO.NUM_HEADS", "2", "MODEL.YOSO.TRAIN_NUM_POINTS", "512",
            "MODEL.YOSO.AGGREGATOR.COMPRESS_CHANNELS", "[32, 32, 64, 64]",
            "MODEL.YOSO.TEST.OBJECT_MASK_THRESHOLD", "0.3",
            "DATALOADER.NUM_WORKERS", "0", "TEST.TIMING.ENABLED", "False",
        ]
        before, after = pq_before_and_after(
            f"{repo_root}/configs/Synthetic-PanopticSegmentation/yoso.yaml", opts, "fastpan_shapes_train")
    finally:
        torch.set_num_threads(threads)
    print("YOSO short training PQ before", before["PQ"], "after", after)
    assert before["PQ"] < 1.0
    assert after["PQ"] > before["PQ"] + 10.0, (before, after)
    assert after["PQ_th"] > before["PQ_th"] + 3.0, (before, after)
