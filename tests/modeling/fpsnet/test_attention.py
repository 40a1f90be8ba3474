"""Attention masks: hand-computed Gaussian values, zero outside the box, hard masks, padding."""
import math

import pytest
import torch

from fastpan_d2.modeling.fpsnet.attention import draw_attention_masks


def draw(boxes, valid=None, size=(8, 8), stride=8, **kw):
    boxes = torch.tensor(boxes, dtype=torch.float32).view(1, -1, 4)
    if valid is None:
        valid = torch.ones(boxes.shape[:2], dtype=torch.bool)
    return draw_attention_masks(boxes, valid, size, stride, **kw)[0]


def test_gaussian_values_by_hand():
    # Box at the input scale [8, 16, 56, 48] -> feature map (stride 8): x 1..7, y 2..6,
    # centre (4, 4), w = 6, h = 4 -> variances w/4 = 1.5, h/4 = 1.
    m = draw([[8, 16, 56, 48]], scale=50.0)
    # Pixel (row i, col j) has centre (j + 0.5, i + 0.5).
    def f(i, j):
        dx, dy = j + 0.5 - 4.0, i + 0.5 - 4.0
        return 50.0 * math.exp(-0.5 * (dx * dx / 1.5 + dy * dy / 1.0))
    assert m[0, 3, 3].item() == pytest.approx(f(3, 3), rel=1e-5)  # nearest the centre
    assert m[0, 2, 6].item() == pytest.approx(f(2, 6), rel=1e-5)
    assert m[0, 5, 1].item() == pytest.approx(f(5, 1), rel=1e-5)
    # Outside the box (x centre 0.5 < 1, y centre 6.5 > 6, x centre 7.5 > 7): zero.
    assert m[0, :, 0].abs().sum() == 0 and m[0, 6:].abs().sum() == 0 and m[0, :, 7].abs().sum() == 0
    assert m[0, :2].abs().sum() == 0
    assert (m[0, 2:6, 1:7] > 0).all()


def test_peak_is_scale_at_the_centre_and_std_spread_is_wider():
    # Box centred on the pixel centre (2.5, 2.5) in feature units: value exactly C_att there.
    m = draw([[4, 4, 36, 36]], size=(6, 6), scale=7.0)
    assert m[0, 2, 2].item() == pytest.approx(7.0)
    assert m.max().item() == pytest.approx(7.0)
    wide = draw([[4, 4, 36, 36]], size=(6, 6), scale=7.0, spread="std")
    # w = 4 feature px: variance w/4 = 1 and std w/4 = 1 coincide; a bigger box differs.
    assert torch.allclose(m, wide)
    m = draw([[0, 0, 64, 64]], size=(8, 8), scale=1.0)  # w = 8: variance 2 vs std 2 (variance 4)
    s = draw([[0, 0, 64, 64]], size=(8, 8), scale=1.0, spread="std")
    assert m[0, 4, 7].item() == pytest.approx(math.exp(-0.5 * (3.5**2 / 2 + 0.5**2 / 2)), rel=1e-5)
    assert s[0, 4, 7].item() == pytest.approx(math.exp(-0.5 * (3.5**2 / 4 + 0.5**2 / 4)), rel=1e-5)


def test_hard_masks_and_empty_slots():
    m = draw([[8, 16, 56, 48], [0, 0, 0, 0]], valid=torch.tensor([[True, False]]), hard=True, scale=50.0)
    expected = torch.zeros(8, 8)
    expected[2:6, 1:7] = 50.0
    assert torch.equal(m[0], expected)
    assert m[1].abs().sum() == 0


def test_tiny_box_marks_its_centre_pixel_and_batching():
    boxes = torch.tensor([[[17.0, 17.0, 19.0, 19.0]], [[40.0, 8.0, 56.0, 24.0]]])  # 2 images
    valid = torch.ones(2, 1, dtype=torch.bool)
    m = draw_attention_masks(boxes, valid, (5, 9), 8, scale=1.0)
    assert m.shape == (2, 1, 5, 9)
    assert m[0, 0, 2, 2].item() == pytest.approx(math.exp(-0.5 * 2 * (0.25**2) / (0.25 / 4)), rel=1e-4)
    assert (m[0, 0] > 0).sum() == 1
    # Second image: centre (6, 2), w = h = 2 -> pixels with centres 5.5/6.5 and 1.5/2.5.
    assert (m[1, 0] > 0).nonzero().tolist() == [[1, 5], [1, 6], [2, 5], [2, 6]]
