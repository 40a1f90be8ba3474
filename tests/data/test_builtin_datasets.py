"""Real datasets: clear errors for missing folders and unknown category ids; a tiny fake dataset in
each supported layout loads with the right contiguous ids."""
import json
import os

import cv2
import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from fastpan_d2.data.datasets import register_all_builtin

REAL = {
    "coco_2017_val_panoptic": "coco",
    "coco_2017_train_panoptic_separated": "coco",
    "coco_2017_val_100_panoptic_stuffonly": "coco",
    "cityscapes_fine_panoptic_val": "cityscapes",
    "ade20k_panoptic_train": "ADEChallengeData2016",
    "mapillary_vistas_panoptic_val": "mapillary_vistas",
    "voc_2012_panoptic_train": "VOC2012",
}


@pytest.mark.parametrize("name", sorted(REAL))
def test_missing_folder_names_path_and_step(tmp_path, fresh_registry, name):
    register_all_builtin(str(tmp_path))
    with pytest.raises(FileNotFoundError) as e:
        DatasetCatalog.get(name)
    msg = str(e.value)
    assert name in msg
    assert str(tmp_path / REAL[name]) in msg  # names the missing path
    assert "README 'Datasets'" in msg and ("run" in msg or "download" in msg)  # and the step
    assert "\n" not in msg


def _write_pan(path, ids):
    ids = np.asarray(ids, np.int64)
    rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8)
    assert cv2.imwrite(str(path), rgb[..., ::-1])


def _fake_coco_format(image_dir, png_dir, json_file, stem, category_ids):
    """One 8x10 image with two segments (ids 1, 2) of the given dataset category ids."""
    os.makedirs(image_dir, exist_ok=True)
    os.makedirs(png_dir, exist_ok=True)
    cv2.imwrite(os.path.join(image_dir, stem + ".jpg"), np.zeros((8, 10, 3), np.uint8))
    ids = np.ones((8, 10), np.int64)
    ids[2:5, 3:7] = 2
    _write_pan(os.path.join(png_dir, stem + ".png"), ids)
    infos = [
        {"id": i + 1, "category_id": c, "iscrowd": 0, "area": int((ids == i + 1).sum()), "bbox": [0, 0, 1, 1]}
        for i, c in enumerate(category_ids)
    ]
    with open(json_file, "w") as f:
        json.dump(
            {
                "images": [{"id": stem, "file_name": stem + ".jpg", "height": 8, "width": 10}],
                "annotations": [{"image_id": stem, "file_name": stem + ".png", "segments_info": infos}],
            },
            f,
        )


def _fake_ade(root, category_ids):
    base = root / "ADEChallengeData2016"
    _fake_coco_format(
        str(base / "images" / "validation"),
        str(base / "ade20k_panoptic_val"),
        str(base / "ade20k_panoptic_val.json"),
        "ADE_val_00000001",
        category_ids,
    )
    return base


@pytest.mark.parametrize(
    "name, image_dir, png_dir, json_file, cats, expected",
    [
        (
            "mapillary_vistas_panoptic_val",
            "mapillary_vistas/validation/images",
            "mapillary_vistas/validation/v1.2/panoptic",
            "mapillary_vistas/validation/v1.2/panoptic/panoptic_2018.json",
            [28, 56],  # sky (stuff), car (thing)
            [(27, False), (55, True)],
        ),
        (
            "coco_2017_val_panoptic",
            "coco/val2017",
            "coco/panoptic_val2017",
            "coco/annotations/panoptic_val2017.json",
            [200, 1],  # rug-merged (stuff, the last of 133), person (thing)
            [(132, False), (0, True)],
        ),
    ],
)
def test_documented_layouts_load(tmp_path, fresh_registry, name, image_dir, png_dir, json_file, cats, expected):
    os.makedirs(os.path.dirname(tmp_path / json_file), exist_ok=True)
    _fake_coco_format(str(tmp_path / image_dir), str(tmp_path / png_dir), str(tmp_path / json_file), "x1", cats)
    register_all_builtin(str(tmp_path))
    (d,) = DatasetCatalog.get(name)
    assert [(s["category_id"], s["isthing"]) for s in d["segments_info"]] == expected
    meta = MetadataCatalog.get(name)
    assert meta.panoptic_json == str(tmp_path / json_file) and meta.panoptic_root == str(tmp_path / png_dir)


def test_partially_prepared_names_the_missing_part(tmp_path, fresh_registry):
    base = tmp_path / "ADEChallengeData2016"
    (base / "images" / "validation").mkdir(parents=True)
    register_all_builtin(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="ade20k_panoptic_val") as e:
        DatasetCatalog.get("ade20k_panoptic_val")
    assert str(base / "ade20k_panoptic_val") in str(e.value)
    assert "tools/prepare_ade20k_panoptic.py" in str(e.value)


def test_fake_ade20k_loads_with_contiguous_ids(tmp_path, fresh_registry):
    _fake_ade(tmp_path, [0, 12])  # wall (stuff), person (thing)
    register_all_builtin(str(tmp_path))
    (d,) = DatasetCatalog.get("ade20k_panoptic_val")
    meta = MetadataCatalog.get("ade20k_panoptic_val")
    wall, person = d["segments_info"]
    assert (wall["category_id"], wall["isthing"]) == (0, False)
    assert (person["category_id"], person["isthing"]) == (12, True)
    assert meta.stuff_classes[12] == "person" and meta.stuff_classes[0] == "wall"
    assert (d["height"], d["width"]) == (8, 10)
    assert os.path.isfile(d["file_name"]) and os.path.isfile(d["pan_seg_file_name"])


def test_unknown_category_id_is_a_clear_value_error(tmp_path, fresh_registry):
    base = _fake_ade(tmp_path, [0, 999])
    register_all_builtin(str(tmp_path))
    with pytest.raises(ValueError) as e:
        DatasetCatalog.get("ade20k_panoptic_val")
    msg = str(e.value)
    assert "999" in msg and str(base / "ade20k_panoptic_val.json") in msg and "ADE_val_00000001.png" in msg


def test_fake_cityscapes_loads_and_checks_categories(tmp_path, fresh_registry):
    cs = tmp_path / "cityscapes"
    (cs / "leftImg8bit" / "val" / "ulm").mkdir(parents=True)
    (cs / "gtFine" / "cityscapes_panoptic_val").mkdir(parents=True)
    cv2.imwrite(str(cs / "leftImg8bit" / "val" / "ulm" / "ulm_000000_000019_leftImg8bit.png"), np.zeros((4, 8, 3), np.uint8))
    ids = np.full((4, 8), 7, np.int64)
    ids[:, 4:] = 26001  # a car (category 26), instance 1
    _write_pan(cs / "gtFine" / "cityscapes_panoptic_val" / "ulm_000000_000019_gtFine_panoptic.png", ids)

    def write_json(car_category):
        segs = [{"id": 7, "category_id": 7, "iscrowd": 0}, {"id": 26001, "category_id": car_category, "iscrowd": 0}]
        with open(cs / "gtFine" / "cityscapes_panoptic_val.json", "w") as f:
            json.dump(
                {
                    "annotations": [
                        {
                            "image_id": "ulm_000000_000019",
                            "file_name": "ulm_000000_000019_gtFine_panoptic.png",
                            "segments_info": segs,
                        }
                    ]
                },
                f,
            )

    write_json(26)
    register_all_builtin(str(tmp_path))
    (d,) = DatasetCatalog.get("cityscapes_fine_panoptic_val")
    road, car = d["segments_info"]
    assert (road["category_id"], road["isthing"]) == (0, False)  # trainId of road
    assert (car["category_id"], car["isthing"]) == (13, True)  # trainId of car
    assert d["image_id"] == "ulm_000000_000019"
    write_json(99)
    with pytest.raises(ValueError, match="Unknown category id 99"):
        DatasetCatalog.get("cityscapes_fine_panoptic_val")
