"""The dataset mapper every fastpan_d2 network trains with.

Input: a dataset dict in detectron2's COCO-panoptic (non-separated) form: ``file_name``,
``pan_seg_file_name`` and ``segments_info`` (``id``, contiguous ``category_id``, ``iscrowd``).
Output, after the augmentations of ``cfg.INPUT.AUGMENTATION`` (see ``transforms.py``):

* ``image``: uint8 tensor (C, H, W) in ``cfg.INPUT.FORMAT``;
* ``sem_seg``: long tensor (H, W), contiguous category id per pixel (things and stuff),
  ``ignore_label`` (255) on unlabeled and crowd pixels;
* ``instances``: ``Instances`` of the non-crowd things: ``gt_classes`` (thing index,
  0..N_thing-1), ``gt_masks`` (``BitMasks``) and ``gt_boxes`` (tight boxes of the masks);
* ``pan_seg``: long tensor (H, W) of segment ids (0 = none) with ``segments_info`` alongside,
  for networks that build per-segment targets.
"""
import copy
import os

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import MetadataCatalog
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils.registry import Registry

from .categories import PanopticCategories
from .transforms import build_augmentations

DATASET_MAPPER_REGISTRY = Registry("DATASET_MAPPER")
DATASET_MAPPER_REGISTRY.__doc__ = "Dataset mappers selected by cfg.INPUT.DATASET_MAPPER_NAME."


def read_image_or_fail(file_name, format):
    """``detectron2.data.detection_utils.read_image`` with an error that names the file."""
    if not os.path.isfile(file_name):
        raise FileNotFoundError(f"Image file does not exist: {file_name}")
    try:
        return utils.read_image(file_name, format=format)
    except Exception as e:
        raise ValueError(f"Cannot read image {file_name} (corrupt or not an image): {e}") from e


def rgb_to_id(color):
    """COCO panoptic PNG colour -> segment id (id = R + 256 G + 256² B)."""
    color = color.astype(np.int64)
    return color[..., 0] + 256 * color[..., 1] + 256 * 256 * color[..., 2]


@DATASET_MAPPER_REGISTRY.register()
class PanopticDatasetMapper:
    @configurable
    def __init__(self, *, is_train, augmentations, image_format, categories):
        self.is_train = is_train
        self.augmentations = T.AugmentationList(augmentations)
        self.image_format = image_format
        self.categories = categories
        self._to_thing = categories.contiguous_to_thing_index().numpy()

    @classmethod
    def from_config(cls, cfg, is_train=True):
        dataset_names = cfg.DATASETS.TRAIN if is_train else cfg.DATASETS.TEST
        meta = MetadataCatalog.get(dataset_names[0])
        return {
            "is_train": is_train,
            "augmentations": build_augmentations(cfg, is_train),
            "image_format": cfg.INPUT.FORMAT,
            "categories": PanopticCategories.from_metadata(meta),
        }

    def __call__(self, dataset_dict):
        dataset_dict = copy.deepcopy(dataset_dict)
        image = read_image_or_fail(dataset_dict["file_name"], self.image_format)
        utils.check_image_size(dataset_dict, image)

        pan_seg = None
        if "pan_seg_file_name" in dataset_dict:
            pan_rgb = read_image_or_fail(dataset_dict["pan_seg_file_name"], "RGB")
            # float64 holds every 24-bit segment id exactly, and detectron2's resize of a
            # non-uint8 map uses torch's nearest interpolation, which has no int64 kernel.
            pan_seg = rgb_to_id(pan_rgb).astype(np.float64)
        aug_input = T.AugInput(image, sem_seg=pan_seg)
        self.augmentations(aug_input)
        image, pan_seg = aug_input.image, aug_input.sem_seg
        if pan_seg is not None:
            pan_seg = np.rint(pan_seg).astype(np.int64)
        h, w = image.shape[:2]
        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        if pan_seg is None:
            return dataset_dict
        if not self.is_train:
            dataset_dict.pop("pan_seg_file_name", None)

        segments = dataset_dict.pop("segments_info")
        sem_seg = np.full((h, w), self.categories.ignore_label, dtype=np.int64)
        masks, classes = [], []
        for seg in segments:
            mask = pan_seg == seg["id"]
            if seg.get("iscrowd", 0):
                continue
            sem_seg[mask] = seg["category_id"]
            thing = self._to_thing[seg["category_id"]]
            if thing >= 0 and mask.any():
                masks.append(mask)
                classes.append(int(thing))
        instances = Instances((h, w))
        instances.gt_classes = torch.tensor(classes, dtype=torch.int64)
        if masks:
            bit = BitMasks(torch.from_numpy(np.stack(masks)))
        else:
            bit = BitMasks(torch.zeros((0, h, w), dtype=torch.bool))
        instances.gt_masks = bit
        instances.gt_boxes = bit.get_bounding_boxes() if masks else Boxes(torch.zeros((0, 4)))
        dataset_dict["instances"] = instances
        dataset_dict["sem_seg"] = torch.from_numpy(sem_seg)
        dataset_dict["pan_seg"] = torch.from_numpy(pan_seg.astype(np.int64))
        dataset_dict["segments_info"] = segments
        return dataset_dict
