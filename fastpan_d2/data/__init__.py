"""Datasets, mappers and augmentations."""
from .categories import PanopticCategories  # noqa: F401
from .panoptic_mapper import DATASET_MAPPER_REGISTRY, PanopticDatasetMapper  # noqa: F401
from . import datasets  # noqa: F401  (registers datasets)
