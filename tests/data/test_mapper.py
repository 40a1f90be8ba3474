"""PanopticDatasetMapper on the synthetic data: targets consistent with the panoptic PNG."""
import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import transforms as T

from fastpan_d2.data import PanopticCategories, PanopticDatasetMapper


def read_ids(path):
    rgb = cv2.imread(path)[..., ::-1].astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def make_mapper(augs, is_train=True):
    cats = PanopticCategories.from_metadata(MetadataCatalog.get("fastpan_shapes_train"))
    return PanopticDatasetMapper(is_train=is_train, augmentations=augs, image_format="RGB", categories=cats)


def test_targets_match_png(synthetic_small):
    d = DatasetCatalog.get("fastpan_shapes_train")[1]
    out = make_mapper([])(d)
    ids = read_ids(d["pan_seg_file_name"])
    img = np.asarray(Image.open(d["file_name"]).convert("RGB"))  # detectron2 decodes with PIL too
    assert out["image"].dtype == torch.uint8 and out["image"].shape == (3, 128, 128)
    np.testing.assert_array_equal(out["image"].permute(1, 2, 0).numpy(), img)
    np.testing.assert_array_equal(out["pan_seg"].numpy(), ids)
    expected_sem = np.full(ids.shape, 255)
    things = []
    for s in d["segments_info"]:
        expected_sem[ids == s["id"]] = s["category_id"]
        if s["isthing"]:
            things.append(s)
    np.testing.assert_array_equal(out["sem_seg"].numpy(), expected_sem)
    inst = out["instances"]
    assert len(inst) == len(things) >= 2
    for k, s in enumerate(things):
        assert inst.gt_classes[k].item() == s["category_id"]  # thing index == contiguous id here
        np.testing.assert_array_equal(inst.gt_masks.tensor[k].numpy(), ids == s["id"])
        x, y, w, h = s["bbox"]
        assert inst.gt_boxes.tensor[k].tolist() == [x, y, x + w, y + h]


def test_resized_targets_keep_segment_ids(synthetic_small):
    d = DatasetCatalog.get("fastpan_shapes_train")[2]
    out = make_mapper([T.Resize((96, 72)), T.RandomFlip(prob=1.0)])(d)
    ids = read_ids(d["pan_seg_file_name"])
    pan = out["pan_seg"]
    assert out["image"].shape == (3, 96, 72) and pan.shape == (96, 72)
    assert set(pan.unique().tolist()) <= set(np.unique(ids).tolist())  # ids survive resizing exactly
    cat = {s["id"]: s["category_id"] for s in d["segments_info"]}
    lut = torch.full((int(ids.max()) + 1,), 255, dtype=torch.long)
    for k, v in cat.items():
        lut[k] = v
    assert torch.equal(out["sem_seg"], lut[pan])
    for k in range(len(out["instances"])):
        m = out["instances"].gt_masks.tensor[k]
        assert len(pan[m].unique()) == 1  # every instance mask is exactly one segment


def test_corrupt_image_names_the_file(tmp_path, synthetic_small):
    d = dict(DatasetCatalog.get("fastpan_shapes_val")[0])
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image at all" * 3)
    d["file_name"] = str(bad)
    with pytest.raises(Exception, match="broken.png"):
        make_mapper([], is_train=False)(d)
    d["file_name"] = str(tmp_path / "missing.jpg")
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        make_mapper([], is_train=False)(d)
