"""Augmentations chosen by ``cfg.INPUT.AUGMENTATION`` (shared by every network's mapper).

* ``ResizeShortestEdge``: detectron2's default (MIN_SIZE_TRAIN/MAX_SIZE_TRAIN, random flip).
* ``FixedSize``: EPSNet's recipe: resize to ``INPUT.FIXED_SIZE`` (H, W) without keeping the
  aspect ratio; in training first scale that size by a factor drawn from ``INPUT.SCALE_RANGE``,
  then crop ``INPUT.FIXED_SIZE`` back out.
* ``ScaleJitterCrop``: large-scale jitter / Cityscapes recipe: ``ResizeScale`` of
  ``INPUT.SCALE_BASE_SIZE`` by a factor in ``INPUT.SCALE_RANGE``, then ``FixedSizeCrop`` of
  ``INPUT.CROP.SIZE``; at test time ``ResizeShortestEdge`` with MIN_SIZE_TEST/MAX_SIZE_TEST.

``INPUT.COLOR_AUG_SSD`` adds SSD's photometric distortion (``ColorAugSSD``) after them in training.
"""
import cv2
import numpy as np
from detectron2.data import transforms as T


class RandomScaledFixedSize(T.Augmentation):
    """Resize to (s·H, s·W) with s ~ U(scale_range), ignoring the input's aspect ratio."""

    def __init__(self, size, scale_range):
        super().__init__()
        self.size = tuple(size)
        self.scale_range = tuple(scale_range)

    def get_transform(self, image):
        h, w = image.shape[:2]
        s = np.random.uniform(*self.scale_range)
        return T.ResizeTransform(h, w, int(round(self.size[0] * s)), int(round(self.size[1] * s)))


class ColorAugSSD(T.Augmentation):
    """SSD's photometric distortion (Liu et al., ECCV 2016, as YOLACT/EPSNet and Mask2Former/YOSO
    train): each step with probability 1/2, in this order: brightness + U(-32, 32); contrast x
    U(0.5, 1.5) either here or after the next two steps (coin flip); saturation x U(0.5, 1.5); hue
    + U(-18, 18) in OpenCV's 8-bit hue units (half-degrees). Values are clipped to [0, 255].
    Geometry and labels are untouched.
    """

    def __init__(self, image_format="RGB", brightness_delta=32, contrast_range=(0.5, 1.5),
                 saturation_range=(0.5, 1.5), hue_delta=18):
        super().__init__()
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"ColorAugSSD needs an RGB or BGR image, got INPUT.FORMAT {image_format!r}")
        self._init(locals())

    def _draw(self):
        """The random choices of one application: (brightness, contrast, contrast_last, saturation, hue)."""
        coin = lambda: np.random.rand() < 0.5  # noqa: E731
        brightness = np.random.uniform(-self.brightness_delta, self.brightness_delta) if coin() else 0.0
        contrast_last = coin()
        contrast = np.random.uniform(*self.contrast_range) if coin() else 1.0
        saturation = np.random.uniform(*self.saturation_range) if coin() else 1.0
        hue = int(np.random.randint(-self.hue_delta, self.hue_delta + 1)) if coin() else 0
        return brightness, contrast, contrast_last, saturation, hue

    def get_transform(self, image):
        brightness, contrast, contrast_last, saturation, hue = self._draw()
        to_hsv, from_hsv = (
            (cv2.COLOR_RGB2HSV, cv2.COLOR_HSV2RGB) if self.image_format == "RGB" else (cv2.COLOR_BGR2HSV, cv2.COLOR_HSV2BGR)
        )

        def distort(img):
            dtype = img.dtype
            img = np.clip(img.astype(np.float32) + brightness, 0, 255)
            if not contrast_last:
                img = np.clip(img * contrast, 0, 255)
            if saturation != 1.0 or hue != 0:
                hsv = cv2.cvtColor(img.astype(np.uint8), to_hsv).astype(np.int32)
                hsv[..., 0] = (hsv[..., 0] + hue) % 180
                hsv[..., 1] = np.clip(hsv[..., 1] * saturation, 0, 255)
                img = cv2.cvtColor(hsv.astype(np.uint8), from_hsv).astype(np.float32)
            if contrast_last:
                img = np.clip(img * contrast, 0, 255)
            return img.astype(dtype) if dtype == np.uint8 else img

        return T.ColorTransform(distort)


def build_augmentations(cfg, is_train):
    augs = _build_geometric_augmentations(cfg, is_train)
    if is_train and cfg.INPUT.COLOR_AUG_SSD:
        augs.append(ColorAugSSD(cfg.INPUT.FORMAT))
    return augs


def _build_geometric_augmentations(cfg, is_train):
    name = cfg.INPUT.AUGMENTATION
    flip = []
    if is_train and cfg.INPUT.RANDOM_FLIP != "none":
        flip = [
            T.RandomFlip(
                horizontal=cfg.INPUT.RANDOM_FLIP == "horizontal",
                vertical=cfg.INPUT.RANDOM_FLIP == "vertical",
            )
        ]
    if name == "ResizeShortestEdge":
        if is_train:
            augs = [
                T.ResizeShortestEdge(
                    cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN, cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING
                )
            ]
            if cfg.INPUT.CROP.ENABLED:
                augs.append(T.RandomCrop(cfg.INPUT.CROP.TYPE, cfg.INPUT.CROP.SIZE))
            return augs + flip
        return [T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST, "choice")]
    if name == "FixedSize":
        size = tuple(cfg.INPUT.FIXED_SIZE)
        if is_train:
            return [
                RandomScaledFixedSize(size, cfg.INPUT.SCALE_RANGE),
                T.RandomCrop("absolute", size),
                T.Resize(size),  # only changes anything if the scaled image was smaller than size
            ] + flip
        return [T.Resize(size)]
    if name == "ScaleJitterCrop":
        if is_train:
            h, w = cfg.INPUT.SCALE_BASE_SIZE
            return [
                T.ResizeScale(cfg.INPUT.SCALE_RANGE[0], cfg.INPUT.SCALE_RANGE[1], h, w),
                T.FixedSizeCrop(tuple(cfg.INPUT.CROP.SIZE), pad=False),
            ] + flip
        return [T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST, "choice")]
    raise ValueError(
        f"Unknown INPUT.AUGMENTATION {name!r}; expected ResizeShortestEdge, FixedSize or ScaleJitterCrop"
    )
