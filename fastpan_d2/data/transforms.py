"""Augmentations chosen by ``cfg.INPUT.AUGMENTATION`` (shared by every network's mapper).

* ``ResizeShortestEdge``: detectron2's default (MIN_SIZE_TRAIN/MAX_SIZE_TRAIN, random flip).
* ``FixedSize``: EPSNet's recipe: resize to ``INPUT.FIXED_SIZE`` (H, W) without keeping the
  aspect ratio; in training first scale that size by a factor drawn from ``INPUT.SCALE_RANGE``,
  then crop ``INPUT.FIXED_SIZE`` back out.
* ``ScaleJitterCrop``: large-scale jitter / Cityscapes recipe: ``ResizeScale`` of
  ``INPUT.SCALE_BASE_SIZE`` by a factor in ``INPUT.SCALE_RANGE``, then ``FixedSizeCrop`` of
  ``INPUT.CROP.SIZE``; at test time ``ResizeShortestEdge`` with MIN_SIZE_TEST/MAX_SIZE_TEST.
"""
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


def build_augmentations(cfg, is_train):
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
