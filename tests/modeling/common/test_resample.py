"""fastpan_d2.modeling.common.resample: maps on the padded canvas back to the output size."""
import torch

from fastpan_d2.modeling.common.resample import resample_to_output


def test_resample_identity_and_aspect_change():
    x = torch.arange(12.0).view(1, 3, 4)
    # stride 1, image fills the canvas, same output size: identity
    torch.testing.assert_close(resample_to_output(x, 1.0, (3, 4), (3, 4)), x)
    # canvas 4x4 at stride 2 (8x8 input); the image was 4x8 px (rows 0..1 of the canvas) and had been
    # resized from 2x4: each output pixel is the centre of one canvas cell of rows 0..1.
    canvas = torch.arange(16.0).view(1, 4, 4)
    out = resample_to_output(canvas, 2.0, (4, 8), (2, 4))
    torch.testing.assert_close(out, canvas[:, :2, :])
    # Output twice the image: bilinear between the cell centres (align_corners=False rules).
    out = resample_to_output(torch.tensor([[[0.0, 2.0]]]), 1.0, (1, 2), (1, 4))
    torch.testing.assert_close(out, torch.tensor([[[0.0, 0.5, 1.5, 2.0]]]))


def test_same_size_matches_full_upsample_then_crop():
    x = torch.randn(3, 32, 32)  # a padded 128x128 batch at stride 4
    full = torch.nn.functional.interpolate(x[None], scale_factor=4, mode="bilinear", align_corners=False)[0]
    out = resample_to_output(x, 4, (72, 101), (72, 101))
    assert torch.allclose(out, full[:, :72, :101], atol=1e-6)
    assert resample_to_output(x, 4, (72, 101), (144, 50)).shape == (3, 144, 50)


def test_resized_output_is_one_exact_pass():
    """Output 3x the image of a stride-2 canvas: output pixel y samples canvas coordinate
    (y + 0.5) * h / oh / stride - 0.5 = (y + 0.5) / 6 - 0.5, bilinear, edges clamped."""
    canvas = torch.tensor([[[0.0, 6.0, 12.0]]])  # 1 x 3 cells at stride 2: image 2 x 6 px
    out = resample_to_output(canvas, 2, (2, 6), (1, 18))
    xs = (torch.arange(18.0) + 0.5) / 6 - 0.5
    expected = 6.0 * xs.clamp(0, 2)
    torch.testing.assert_close(out[0, 0], expected)
    assert out.shape == (1, 1, 18)
