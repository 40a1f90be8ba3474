"""A short LPSNet training run through the engine must raise PQ far above the untrained model's.

CPU-sized: a private synthetic setting of 8 images at 64x64, trained on and evaluated on those
same images, with every width of the synthetic config cut down, so that 300 iterations run in
~35 s on one core (measured: PQ 61-62, PQ_th 37-40, PQ_st ~91 after; the paper's deformable
semantic head, whose offsets blow up from scratch, gave PQ 3.3 / PQ_th 0 here: see
projects/LPSNet/README.md). It checks that the box targets, the losses, the decoding (class and
confidence from the semantic head, score x border-ness) and the parameter-free panoptic head agree well
enough for the network to fit panoptic ground truth, things included; generalisation is what the
synthetic config's full run measures (projects/LPSNet/README.md).
"""
import os

from tests.train_utils import pq_before_and_after

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
MAX_ITER = int(os.environ.get("LPSNET_TEST_ITERS", 300))


def small_opts(tmp_path):
    return [
        "OUTPUT_DIR", str(tmp_path / "out"),
        "DATASETS.SYNTHETIC.ROOT", str(tmp_path / "data"),
        "DATASETS.SYNTHETIC.IMAGE_SIZE", "(64, 64)",
        "DATASETS.SYNTHETIC.NUM_TRAIN", "8",
        "DATASETS.SYNTHETIC.NUM_VAL", "2",
        "DATASETS.TEST", "('fastpan_shapes_train',)",
        "SOLVER.MAX_ITER", str(MAX_ITER),
        "SOLVER.WARMUP_ITERS", "20",
        "SOLVER.STEPS", "(1000,)",
        "INPUT.MIN_SIZE_TRAIN", "(64,)",
        "INPUT.MAX_SIZE_TRAIN", "64",
        "INPUT.MIN_SIZE_TEST", "64",
        "INPUT.MAX_SIZE_TEST", "64",
        "MODEL.FPN.OUT_CHANNELS", "64",
        "MODEL.PPM_FPN.PPM_CHANNELS", "32",
        "MODEL.LPSNET.NUM_CONVS", "2",
        "MODEL.LPSNET.SIZES_OF_INTEREST", "[16, 32, 64, 128]",  # objects of 3-25 px at 64x64
        "MODEL.LPSNET.SEM_SEG_CONVS_DIM", "32",
        "TEST.TIMING.ENABLED", "False",
        "DATALOADER.NUM_WORKERS", "0",
    ]


def test_short_training_raises_pq(tmp_path):
    before, after = pq_before_and_after(
        os.path.join(REPO, "configs/Synthetic-PanopticSegmentation/lpsnet.yaml"), small_opts(tmp_path),
        "fastpan_shapes_train")
    print(f"LPSNet PQ before {before} after {MAX_ITER} iterations {after}")
    assert before["PQ"] < 5.0
    assert after["PQ"] > before["PQ"] + 30.0
    assert after["PQ_st"] > 60.0
    assert after["PQ_th"] > before["PQ_th"] + 20.0  # things: boxes x semantic classes
