"""The one category convention every fastpan_d2 network uses.

Datasets are registered the way detectron2's ``register_coco_panoptic`` (not *separated*) does:
``stuff_classes`` lists ALL classes (things and stuff), and a segment's ``category_id`` is its
index there (the "contiguous id"). ``thing_dataset_id_to_contiguous_id`` tells which contiguous
ids are things. Detectors inside the networks count things 0..N_thing-1 (the "thing index");
``PanopticCategories`` converts between the two.
"""
from dataclasses import dataclass
from typing import List

import torch


@dataclass
class PanopticCategories:
    num_classes: int
    thing_ids: List[int]  # contiguous id of thing index i
    stuff_ids: List[int]  # contiguous ids that are stuff, ascending
    ignore_label: int = 255

    @classmethod
    def from_metadata(cls, meta):
        names = list(meta.stuff_classes)
        thing_ids = sorted(meta.thing_dataset_id_to_contiguous_id.values())
        stuff_ids = [i for i in range(len(names)) if i not in set(thing_ids)]
        return cls(len(names), thing_ids, stuff_ids, int(getattr(meta, "ignore_label", 255)))

    @property
    def num_things(self):
        return len(self.thing_ids)

    @property
    def num_stuff(self):
        return len(self.stuff_ids)

    def is_thing_table(self, device=None):
        """Bool tensor [num_classes]: True where the contiguous id is a thing."""
        t = torch.zeros(self.num_classes, dtype=torch.bool, device=device)
        t[self.thing_ids] = True
        return t

    def contiguous_to_thing_index(self, device=None):
        """Long tensor [num_classes]: thing index of a contiguous id, -1 for stuff."""
        t = torch.full((self.num_classes,), -1, dtype=torch.long, device=device)
        t[self.thing_ids] = torch.arange(self.num_things, device=device)
        return t

    def contiguous_to_stuff_index(self, device=None):
        """Long tensor [num_classes]: stuff index of a contiguous id, -1 for things."""
        t = torch.full((self.num_classes,), -1, dtype=torch.long, device=device)
        t[self.stuff_ids] = torch.arange(self.num_stuff, device=device)
        return t
