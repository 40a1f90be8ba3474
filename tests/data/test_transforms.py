"""ColorAugSSD (SSD's photometric distortion) and its config switch."""
import numpy as np
import pytest

from fastpan_d2.config import get_fastpan_cfg
from fastpan_d2.data.transforms import ColorAugSSD, build_augmentations


def apply(aug, image, draw):
    aug._draw = lambda: draw
    return aug.get_transform(image).apply_image(image)


def test_brightness_and_contrast_known_values():
    img = np.full((4, 5, 3), 100, np.uint8)
    img[0, 0] = 200
    aug = ColorAugSSD("RGB")
    out = apply(aug, img, (10.0, 1.0, False, 1.0, 0))
    assert out.dtype == np.uint8 and (out[1:] == 110).all() and (out[0, 0] == 210).all()
    out = apply(aug, img, (0.0, 1.5, False, 1.0, 0))
    assert (out[1:] == 150).all() and (out[0, 0] == 255).all()  # 300 clipped
    # brightness first, then contrast: (100 - 20) * 0.5
    assert (apply(aug, img, (-20.0, 0.5, True, 1.0, 0))[1:] == 40).all()


@pytest.mark.parametrize("fmt, red, green", [("RGB", (255, 0, 0), (0, 255, 0)), ("BGR", (0, 0, 255), (0, 255, 0))])
def test_hue_and_saturation_known_values(fmt, red, green):
    img = np.zeros((2, 2, 3), np.uint8)
    img[:] = red
    aug = ColorAugSSD(fmt)
    # +60 in OpenCV's half-degree hue units is 120 degrees: red -> green
    assert (apply(aug, img, (0.0, 1.0, False, 1.0, 60)) == np.array(green, np.uint8)).all()
    # saturation x0: grey at the colour's value
    assert (apply(aug, img, (0.0, 1.0, False, 0.0, 0)) == 255).all()


def test_identity_draw_and_random_draws_stay_in_range():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    aug = ColorAugSSD("RGB")
    assert (apply(ColorAugSSD("RGB"), img, (0.0, 1.0, False, 1.0, 0)) == img).all()
    np.random.seed(0)
    changed = 0
    for _ in range(20):
        out = aug.get_transform(img).apply_image(img)
        assert out.shape == img.shape and out.dtype == np.uint8
        changed += int((out != img).any())
    assert changed >= 15  # 4 independent coins: nothing applied with probability 1/16
    with pytest.raises(ValueError, match="INPUT.FORMAT"):
        ColorAugSSD("L")


def test_config_switch_adds_it_in_training_only():
    cfg = get_fastpan_cfg()
    assert not any(isinstance(a, ColorAugSSD) for a in build_augmentations(cfg, True))
    cfg.INPUT.COLOR_AUG_SSD = True
    assert isinstance(build_augmentations(cfg, True)[-1], ColorAugSSD)
    assert not any(isinstance(a, ColorAugSSD) for a in build_augmentations(cfg, False))
