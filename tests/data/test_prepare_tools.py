"""tools/prepare_*.py on tiny hand-made inputs, with the expected panoptic output written out."""
import importlib.util
import json
import os

import cv2
import numpy as np
import pytest
from detectron2.data import DatasetCatalog
from PIL import Image

from fastpan_d2.data.datasets import register_all_builtin
from fastpan_d2.data.datasets.panoptic_io import read_panoptic_png

TOOLS = os.path.join(os.path.dirname(__file__), "..", "..", "tools")


def load_tool(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(TOOLS, name + ".py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def save_palette_png(path, arr):
    im = Image.fromarray(arr.astype(np.uint8), mode="P")
    im.putpalette([v for i in range(256) for v in (i, 255 - i, (7 * i) % 256)])
    im.save(path)


def test_separated_semantic_pngs_match_the_generator(synthetic_small, tmp_path):
    tool = load_tool("prepare_panoptic_separated")
    DatasetCatalog.get("fastpan_shapes_val")
    out = tmp_path / "sem"
    n = tool.convert(
        os.path.join(synthetic_small, "annotations", "panoptic_val.json"),
        os.path.join(synthetic_small, "panoptic_val"),
        str(out),
        workers=0,
    )
    assert n == len(os.listdir(out)) > 0
    for f in os.listdir(out):
        a = cv2.imread(str(out / f), cv2.IMREAD_UNCHANGED)
        b = cv2.imread(os.path.join(synthetic_small, "panoptic_stuff_val", f), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(a, b)
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        tool.convert(str(tmp_path / "nowhere.json"), str(tmp_path), str(out), workers=0)


def _voc_maps():
    cls = np.zeros((6, 8), np.uint8)
    inst = np.zeros((6, 8), np.uint8)
    cls[0:3, 0:4], inst[0:3, 0:4] = 15, 1  # a person
    cls[3:6, 4:8], inst[3:6, 4:8] = 7, 2  # a car
    cls[3, :], inst[3, :] = 255, 255  # boundary band
    return cls, inst


def test_prepare_voc_panoptic(tmp_path, fresh_registry):
    from scipy.io import savemat

    tool = load_tool("prepare_voc_panoptic")
    voc, sbd = tmp_path / "VOC2012", tmp_path / "benchmark_RELEASE" / "dataset"
    for d in ("JPEGImages", "SegmentationClass", "SegmentationObject", "ImageSets/Segmentation"):
        (voc / d).mkdir(parents=True)
    for d in ("cls", "inst"):
        (sbd / d).mkdir(parents=True)
    cls, inst = _voc_maps()
    for stem in ("a", "b", "c"):
        cv2.imwrite(str(voc / "JPEGImages" / f"{stem}.jpg"), np.zeros((6, 8, 3), np.uint8))
    for stem in ("a", "b"):
        save_palette_png(voc / "SegmentationClass" / f"{stem}.png", cls)
        save_palette_png(voc / "SegmentationObject" / f"{stem}.png", inst)
    (voc / "ImageSets/Segmentation/train.txt").write_text("a\n")
    (voc / "ImageSets/Segmentation/val.txt").write_text("b\n")
    # SBD: image c (a horse, class 13, no boundary band); "a" is in VOC, "b" is VOC val
    c_cls = np.zeros((6, 8), np.uint8)
    c_cls[1:5, 1:7] = 13
    savemat(str(sbd / "cls" / "c.mat"), {"GTcls": {"Segmentation": c_cls}})
    savemat(str(sbd / "inst" / "c.mat"), {"GTinst": {"Segmentation": (c_cls > 0).astype(np.uint8)}})
    (sbd / "train.txt").write_text("a\nc\n")
    (sbd / "val.txt").write_text("b\n")

    tool.main(["--voc-dir", str(voc), "--sbd-dir", str(sbd), "--workers", "0"])

    with open(voc / "panoptic_train.json") as f:
        train = json.load(f)
    assert [a["image_id"] for a in train["annotations"]] == ["a", "c"]
    ids = read_panoptic_png(str(voc / "panoptic_train" / "a.png"))
    segs = {s["id"]: s for s in train["annotations"][0]["segments_info"]}
    expected = np.zeros((6, 8), np.int64)
    expected[0:3, 0:4] = 1
    expected[4:6, 4:8] = 2
    np.testing.assert_array_equal(ids, expected)  # background and boundary are void
    assert segs[1]["category_id"] == 15 and segs[1]["area"] == 12 and segs[1]["bbox"] == [0, 0, 4, 3]
    assert segs[2]["category_id"] == 7 and segs[2]["area"] == 8 and segs[2]["bbox"] == [4, 4, 4, 2]
    (horse,) = train["annotations"][1]["segments_info"]
    assert horse["category_id"] == 13 and horse["area"] == 24

    register_all_builtin(str(tmp_path))
    dicts = DatasetCatalog.get("voc_2012_panoptic_train")
    assert [s["category_id"] for s in dicts[0]["segments_info"]] == [14, 6]  # contiguous = id - 1
    assert all(s["isthing"] for d in dicts for s in d["segments_info"])
    assert len(DatasetCatalog.get("voc_2012_panoptic_val")) == 1


def test_prepare_ade20k_panoptic(tmp_path, fresh_registry):
    tool = load_tool("prepare_ade20k_panoptic")
    ade = tmp_path / "ADEChallengeData2016"
    sem = np.zeros((6, 8), np.uint8)
    sem[:, :] = 1  # wall (category 0, stuff)
    sem[4:6, :] = 4  # floor (category 3, stuff)
    sem[0:2, 0:3] = 13  # person (category 12, thing): two instances below
    sem[0:2, 5:8] = 8  # bed (category 7, thing) without an instance -> void
    sem[2, 0] = 0  # other -> void
    inst = np.zeros((6, 8, 3), np.uint8)
    inst[0:2, 0:2] = (9, 1, 0)
    inst[0:2, 2:3] = (9, 2, 0)
    inst[4, 4] = (30, 3, 0)  # an "instance" on floor pixels: majority stuff -> dropped
    for split in ("training", "validation"):
        for sub in ("images", "annotations", "annotations_instance"):
            (ade / sub / split).mkdir(parents=True)
        stem = f"ADE_{split}_00000001"
        cv2.imwrite(str(ade / "images" / split / f"{stem}.jpg"), np.zeros((6, 8, 3), np.uint8))
        Image.fromarray(sem).save(ade / "annotations" / split / f"{stem}.png")
        Image.fromarray(inst).save(ade / "annotations_instance" / split / f"{stem}.png")

    tool.main(["--ade-dir", str(ade), "--workers", "0"])

    with open(ade / "ade20k_panoptic_val.json") as f:
        (ann,) = json.load(f)["annotations"]
    ids = read_panoptic_png(str(ade / "ade20k_panoptic_val" / ann["file_name"]))
    cat_of = {s["id"]: s["category_id"] for s in ann["segments_info"]}
    cats = np.vectorize(lambda i: cat_of.get(i, -1))(ids)
    expected = np.full((6, 8), 0)
    expected[4:6, :] = 3
    expected[0:2, 0:3] = 12
    expected[0:2, 5:8] = -1
    expected[2, 0] = -1
    np.testing.assert_array_equal(cats, expected)
    persons = [s for s in ann["segments_info"] if s["category_id"] == 12]
    assert sorted(s["area"] for s in persons) == [2, 4]  # two instances, not one blob
    assert len(ann["segments_info"]) == 4  # wall, floor, 2 persons
    register_all_builtin(str(tmp_path))
    (d,) = DatasetCatalog.get("ade20k_panoptic_val")
    assert sum(s["isthing"] for s in d["segments_info"]) == 2
