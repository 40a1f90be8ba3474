"""A short LPSNet training run through the engine must raise PQ far above the untrained model's.

CPU-sized: a private synthetic setting of 8 images at 64x64, trained on and evaluated on those
same images, with every width of the synthetic config cut down, so that 300 iterations run in
~35 s on one core (measured with the synthetic config's Adam and semantic weight 3.0, over 3 seeds: PQ 77-80,
PQ_th 62-67, PQ_st 95-96 after; with SGD and weight 1.0 it was PQ 61-62, PQ_th 37-51; the paper's
deformable semantic head, whose offsets blow up from scratch, gave PQ 3.3 / PQ_th 0 here: see
projects/LPSNet/README.md). It checks that the box targets, the losses, the decoding (class and
confidence from the semantic head, score x border-ness) and the parameter-free panoptic head agree well
enough for the network to fit panoptic ground truth, things included; generalisation is what the
synthetic config's full run measures (projects/LPSNet/README.md).
"""
import os

from tests.train_utils import pq_before_and_after, synthetic_config, tiny_synthetic_opts

MAX_ITER = int(os.environ.get("LPSNET_TEST_ITERS", 300))


def small_opts(tmp_path):
    return tiny_synthetic_opts(tmp_path, MAX_ITER) + [
        "MODEL.FPN.OUT_CHANNELS", "64",
        "MODEL.PPM_FPN.PPM_CHANNELS", "32",
        "MODEL.LPSNET.NUM_CONVS", "2",
        "MODEL.LPSNET.SIZES_OF_INTEREST", "[16, 32, 64, 128]",  # objects of 3-25 px at 64x64
        "MODEL.LPSNET.SEM_SEG_CONVS_DIM", "32",
    ]


def test_short_training_raises_pq(tmp_path):
    before, after = pq_before_and_after(
        synthetic_config("lpsnet"), small_opts(tmp_path),
        "fastpan_shapes_train")
    print(f"LPSNet PQ before {before} after {MAX_ITER} iterations {after}")
    assert before["PQ"] < 5.0
    assert after["PQ"] > before["PQ"] + 50.0
    assert after["PQ_st"] > 80.0
    assert after["PQ_th"] > before["PQ_th"] + 40.0  # things: boxes x semantic classes
