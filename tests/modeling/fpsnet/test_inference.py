"""Panoptic output from hand-built logits: argmax, classes from detections, ids, sizes."""
import torch

from fastpan_d2.modeling.fpsnet.inference import panoptic_from_logits

THING_IDS = [1, 3]  # contiguous id of thing index 0, 1
STUFF_IDS = [0, 2]  # contiguous id of stuff index 0, 1
N = 3  # N_att


def logits_from_labels(labels, num_channels, high=10.0):
    """(C, h, w) logits that are ``high`` at each pixel's label and 0 elsewhere."""
    return torch.nn.functional.one_hot(labels, num_channels).permute(2, 0, 1).float() * high


def test_argmax_classes_scores_and_ids():
    # Channels: slots 0..2, stuff 3..4, training-only 5..6. Two detections (slots 0 and 1).
    labels = torch.tensor(
        [
            [3, 3, 0, 0],
            [3, 1, 1, 0],
            [4, 4, 2, 6],  # slot 2 is empty and channel 6 is training-only: never chosen
            [4, 4, 5, 1],
        ]
    )
    logits = logits_from_labels(labels, N + 2 + 2)
    # The second-best channel where the best is unusable: stuff 1 (channel 4).
    logits[4, 2, 2:] = 5.0
    logits[4, 3, 2] = 5.0
    seg, info = panoptic_from_logits(
        logits, 2, torch.tensor([1, 0, 1]), torch.tensor([0.9, 0.6, 0.3]), N,
        THING_IDS, STUFF_IDS, (4, 4), (4, 4), (4, 4),
    )
    # Kept channels: [slot0, slot1, stuff0, stuff1] -> ids 1, 2, 3, 4.
    expected = torch.tensor(
        [
            [3, 3, 1, 1],
            [3, 2, 2, 1],
            [4, 4, 4, 4],
            [4, 4, 4, 2],
        ],
        dtype=torch.int32,
    )
    assert seg.dtype == torch.int32 and torch.equal(seg, expected)
    by_id = {s["id"]: s for s in info}
    assert set(by_id) == {1, 2, 3, 4}
    assert by_id[1]["category_id"] == 3 and by_id[1]["isthing"] and abs(by_id[1]["score"] - 0.9) < 1e-6
    assert by_id[2]["category_id"] == 1 and by_id[2]["isthing"] and abs(by_id[2]["score"] - 0.6) < 1e-6
    assert by_id[3] == {"id": 3, "category_id": 0, "isthing": False, "area": 3}
    assert by_id[4]["category_id"] == 2 and not by_id[4]["isthing"] and by_id[4]["area"] == 7


def test_segments_absent_from_the_map_are_not_listed_and_small_stuff_removal():
    labels = torch.tensor([[0, 0], [0, 3]])
    logits = logits_from_labels(labels, N + 4)
    seg, info = panoptic_from_logits(
        logits, 2, torch.tensor([0, 1]), torch.tensor([0.8, 0.7]), N, THING_IDS, STUFF_IDS,
        (2, 2), (2, 2), (2, 2),
    )
    assert sorted(s["id"] for s in info) == [1, 3]  # slot 1 and stuff 1 have no pixels
    seg, info = panoptic_from_logits(
        logits, 2, torch.tensor([0, 1]), torch.tensor([0.8, 0.7]), N, THING_IDS, STUFF_IDS,
        (2, 2), (2, 2), (2, 2), stuff_area_limit=2,
    )
    assert seg.tolist() == [[1, 1], [1, 0]] and [s["id"] for s in info] == [1]


def test_no_detections_no_stuff_is_all_void():
    logits = torch.randn(N + 2, 3, 3)
    seg, info = panoptic_from_logits(
        logits, 0, torch.zeros(0, dtype=torch.long), torch.zeros(0), N, THING_IDS, [],
        (24, 24), (24, 24), (30, 20),
    )
    assert seg.shape == (30, 20) and (seg == 0).all() and info == []


def test_upsampling_crops_padding_and_resizes_to_the_output_size():
    # Stride-8 logits over a padded 32x32 input holding a 16x24 image; output 32x48 (2x).
    # Stuff 0 on the left half of the image (x < 12 px), stuff 1 on the right; padding says 1.
    logits = torch.zeros(N + 4, 4, 4)
    logits[N, :, :] = -10.0
    logits[N + 1, :, :] = -10.0
    x = torch.arange(4) * 8 + 4  # pixel-centre x of the stride-8 cells: 4, 12, 20, 28
    logits[N, :, :] = (12.0 - x.float()).view(1, 4)  # linear in x: crosses zero at x = 12
    logits[N + 1, :, :] = -(12.0 - x.float()).view(1, 4)
    seg, info = panoptic_from_logits(
        logits, 0, torch.zeros(0, dtype=torch.long), torch.zeros(0), N, THING_IDS, STUFF_IDS,
        (32, 32), (16, 24), (32, 48),
    )
    assert seg.shape == (32, 48)
    # Input columns < 12 -> stuff 0 (id 1) -> output columns < 24; the rest stuff 1 (id 2).
    assert (seg[:, :23] == 1).all() and (seg[:, 25:] == 2).all()
    assert {s["area"] for s in info} <= {32 * 23, 32 * 24, 32 * 25}

