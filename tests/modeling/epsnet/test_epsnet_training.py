"""A short EPSNet training run through the engine must raise PQ far above the untrained model's.

CPU-sized: a private synthetic setting of 8 images at 64x64, evaluated on those same training
images, so that a couple of hundred iterations on two busy cores suffice. This checks that the
targets, losses, decoding and panoptic merge agree with each other well enough for the network to
fit panoptic ground truth (things and stuff); generalisation is what the synthetic config's full
run (projects/EPSNet/README.md) measures.
"""
import os

from tests.train_utils import pq_before_and_after, synthetic_config, tiny_synthetic_opts

MAX_ITER = int(os.environ.get("EPSNET_TEST_ITERS", 120))


def small_opts(tmp_path):
    return tiny_synthetic_opts(tmp_path, MAX_ITER, resize_shortest_edge=False) + [
        "INPUT.FIXED_SIZE", "(64, 64)",
        "INPUT.SCALE_RANGE", "(1.0, 1.0)",
        "MODEL.FPN.OUT_CHANNELS", "64",
        "MODEL.ANCHOR_GENERATOR.SIZES", "[[6], [12], [24], [48], [96]]",
        "MODEL.EPSNET.HEAD_CHANNELS", "64",
        "MODEL.EPSNET.CLA_EMBED_CHANNELS", "32",
        "MODEL.EPSNET.NUM_PROTOTYPES", "16",
        "MODEL.EPSNET.STUFF_AREA_THRESH", "16",
    ]


def test_short_training_raises_pq(tmp_path):
    before, after = pq_before_and_after(
        synthetic_config("epsnet"), small_opts(tmp_path),
        "fastpan_shapes_train")
    print(f"EPSNet PQ before {before} after {MAX_ITER} iterations {after}")
    assert before["PQ"] < 10.0
    assert after["PQ"] > before["PQ"] + 20.0
    assert after["PQ_st"] > 30.0  # stuff through the coefficient semantic head
    assert after["PQ_th"] > before["PQ_th"] + 10.0  # things through boxes + prototype masks
