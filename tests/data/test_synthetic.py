"""The built-in synthetic dataset: registration, determinism, consistent ground truth, difficulty."""
import filecmp
import json
import os

import cv2
import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from pycocotools import mask as mask_util

import fastpan_d2  # noqa: F401
from fastpan_d2.config import get_fastpan_cfg
from fastpan_d2.data import PanopticCategories
from fastpan_d2.data.datasets import configure_synthetic, configure_synthetic_from_cfg, generate_synthetic
from fastpan_d2.data.datasets.synthetic import SYNTHETIC_CATEGORIES, synthetic_setting_dir

from .conftest import SMALL

SYNTH_NAMES = [
    "fastpan_shapes_train",
    "fastpan_shapes_val",
    "fastpan_shapes_train_separated",
    "fastpan_shapes_val_separated",
]
REAL_NAMES = [
    "coco_2017_train_panoptic",
    "coco_2017_val_panoptic",
    "coco_2017_val_panoptic_separated",
    "cityscapes_fine_panoptic_train",
    "cityscapes_fine_panoptic_val",
    "ade20k_panoptic_train",
    "ade20k_panoptic_val",
    "mapillary_vistas_panoptic_train",
    "mapillary_vistas_panoptic_val",
    "voc_2012_panoptic_train",
    "voc_2012_panoptic_val",
]


def read_ids(path):
    rgb = cv2.imread(path, cv2.IMREAD_COLOR)[..., ::-1].astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def load_split(out_dir, split):
    with open(os.path.join(out_dir, "annotations", f"panoptic_{split}.json")) as f:
        pan = json.load(f)
    with open(os.path.join(out_dir, "annotations", f"instances_{split}.json")) as f:
        inst = json.load(f)
    return pan, inst


def test_import_registers_datasets():
    registered = set(DatasetCatalog.list())
    for name in SYNTH_NAMES + REAL_NAMES:
        assert name in registered, name
    meta = MetadataCatalog.get("fastpan_shapes_train")
    cats = PanopticCategories.from_metadata(meta)
    assert cats.num_classes == 9 and cats.thing_ids == [0, 1, 2, 3, 4] and cats.stuff_ids == [5, 6, 7, 8]
    assert meta.stuff_classes[:5] == ["disc", "square", "triangle", "star", "ring"]
    assert meta.evaluator_type == "coco_panoptic_seg" and meta.label_divisor == 1000
    assert meta.ignore_label == 255
    sep = MetadataCatalog.get("fastpan_shapes_train_separated")
    assert sep.stuff_classes[0] == "things" and len(sep.stuff_classes) == 5
    assert sep.stuff_dataset_id_to_contiguous_id == {0: 0, 6: 1, 7: 2, 8: 3, 9: 4}
    # sizes of the real datasets' category tables
    for name, (th, st) in {
        "ade20k_panoptic_val": (100, 50),
        "mapillary_vistas_panoptic_val": (37, 28),
        "voc_2012_panoptic_val": (20, 0),
        "cityscapes_fine_panoptic_val": (8, 11),
        "coco_2017_val_panoptic": (80, 53),
    }.items():
        c = PanopticCategories.from_metadata(MetadataCatalog.get(name))
        assert (c.num_things, c.num_stuff) == (th, st), name


def test_default_root_follows_env_and_cfg(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    try:
        out = configure_synthetic()
        assert out == synthetic_setting_dir(str(tmp_path / "fastpan_shapes"), 0, (128, 128), 300, 50)
        meta = MetadataCatalog.get("fastpan_shapes_val")
        # paths are final before anything is generated
        assert meta.panoptic_json == os.path.join(out, "annotations", "panoptic_val.json")
        assert not os.path.exists(out)
        cfg = get_fastpan_cfg()
        cfg.DATASETS.SYNTHETIC.SEED = 7
        cfg.DATASETS.SYNTHETIC.IMAGE_SIZE = (64, 96)
        cfg.DATASETS.SYNTHETIC.NUM_TRAIN = 5
        cfg.DATASETS.SYNTHETIC.NUM_VAL = 2
        out = configure_synthetic_from_cfg(cfg)
        assert os.path.basename(out) == "v1_seed7_64x96_train5_val2"
        dicts = DatasetCatalog.get("fastpan_shapes_val")
        assert len(dicts) == 2 and len(DatasetCatalog.get("fastpan_shapes_train")) == 5
        img = cv2.imread(dicts[0]["file_name"])
        assert img.shape == (64, 96, 3)
    finally:
        monkeypatch.undo()
        configure_synthetic()


def test_deterministic(tmp_path):
    kw = dict(image_size=(64, 80), num_train=4, num_val=2)
    a = generate_synthetic(str(tmp_path / "a"), seed=1, **kw)
    b = generate_synthetic(str(tmp_path / "b"), seed=1, **kw)
    c = generate_synthetic(str(tmp_path / "c"), seed=2, **kw)
    files = []
    for d, _, names in os.walk(a):
        files += [os.path.relpath(os.path.join(d, n), a) for n in names]
    assert len(files) == 3 * 6 + 4 + 1  # 3 files per image, 4 json, settings
    match, mismatch, errors = filecmp.cmpfiles(a, b, files, shallow=False)
    assert not mismatch and not errors
    match, mismatch, errors = filecmp.cmpfiles(a, c, files, shallow=False)
    assert not errors
    assert any(f.endswith(".jpg") for f in mismatch) and any(f.endswith(".png") for f in mismatch)
    assert "annotations/panoptic_train.json" in mismatch


def test_ground_truth_consistent(synthetic_small):
    out = synthetic_small
    DatasetCatalog.get("fastpan_shapes_val")  # generates
    cat_by_id = {c["id"]: c for c in SYNTHETIC_CATEGORIES}
    for split, num in (("train", SMALL["num_train"]), ("val", SMALL["num_val"])):
        pan, inst = load_split(out, split)
        assert len(pan["images"]) == len(pan["annotations"]) == num
        assert {c["id"] for c in pan["categories"]} == set(range(1, 10))
        assert {c["id"] for c in inst["categories"]} == set(range(1, 6))
        inst_by_image = {}
        for a in inst["annotations"]:
            inst_by_image.setdefault(a["image_id"], []).append(a)
        for ann in pan["annotations"][:12]:
            stem = os.path.splitext(ann["file_name"])[0]
            ids = read_ids(os.path.join(out, f"panoptic_{split}", ann["file_name"]))
            assert ids.shape == tuple(SMALL["image_size"])
            infos = ann["segments_info"]
            seg_ids = [s["id"] for s in infos]
            assert len(seg_ids) == len(set(seg_ids))  # one label per segment id
            assert set(np.unique(ids).tolist()) - {0} == set(seg_ids)  # PNG ids <-> JSON ids
            counts = np.bincount(ids.ravel())
            sem = cv2.imread(os.path.join(out, f"panoptic_stuff_{split}", stem + ".png"), cv2.IMREAD_UNCHANGED)
            expected_sem = np.full(ids.shape, 255, np.int64)
            things = []
            for s in infos:
                m = ids == s["id"]
                assert s["area"] == counts[s["id"]] > 0
                ys, xs = np.nonzero(m)
                assert s["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
                cat = cat_by_id[s["category_id"]]
                expected_sem[m] = 0 if cat["isthing"] else s["category_id"] - 5
                if cat["isthing"]:
                    things.append(s)
            np.testing.assert_array_equal(sem, expected_sem)  # separated semantic PNG agrees
            # instances JSON: one annotation per thing segment, same mask, same class and box
            anns = inst_by_image.get(ann["image_id"], [])
            assert len(anns) == len(things)
            for a, s in zip(sorted(anns, key=lambda a: a["bbox"]), sorted(things, key=lambda s: s["bbox"])):
                assert a["category_id"] == s["category_id"] and a["area"] == s["area"]
                np.testing.assert_array_equal(mask_util.decode(a["segmentation"]).astype(bool), ids == s["id"])


def test_difficulty_is_real(synthetic_small):
    pan, _ = load_split(synthetic_small, "train")
    DatasetCatalog.get("fastpan_shapes_train")
    n_img = len(pan["annotations"])
    small, same_class_touching, things_per_image = 0, 0, []
    cats_seen = set()
    hw = SMALL["image_size"][0] * SMALL["image_size"][1]
    for ann in pan["annotations"]:
        infos = ann["segments_info"]
        cats_seen |= {s["category_id"] for s in infos}
        things = [s for s in infos if s["category_id"] <= 5]
        things_per_image.append(len(things))
        small += sum(s["area"] < 0.01 * hw for s in things)
        ids = read_ids(os.path.join(synthetic_small, "panoptic_train", ann["file_name"]))
        # same-class instances that touch: one occludes/abuts the other (4-neighbourhood)
        pairs = set()
        for a, b in ((ids[:, 1:], ids[:, :-1]), (ids[1:], ids[:-1])):
            diff = a != b
            pairs |= set(zip(a[diff].tolist(), b[diff].tolist()))
        cat = {s["id"]: s["category_id"] for s in infos}
        same_class_touching += sum(
            1 for p, q in pairs if p < q and cat[p] <= 5 and cat[p] == cat[q]
        )
    assert cats_seen == set(range(1, 10))  # every thing and stuff class appears
    assert small >= n_img // 4  # objects under 1% of the image
    assert same_class_touching >= n_img // 5  # deliberate same-class overlaps
    assert np.mean(things_per_image) >= 3 and max(things_per_image) <= 8
    assert np.mean([t >= 2 for t in things_per_image]) >= 0.9
    # 2-4 stuff regions per image
    n_stuff = [sum(s["category_id"] > 5 for s in a["segments_info"]) for a in pan["annotations"]]
    assert min(n_stuff) >= 1 and max(n_stuff) <= 4 and np.mean(n_stuff) >= 2


def test_existing_data_survives_new_generation(tmp_path):
    root = str(tmp_path)
    a = configure_synthetic(root=root, seed=0, image_size=(48, 48), num_train=3, num_val=2)
    try:
        DatasetCatalog.get("fastpan_shapes_train")
        before = {}
        for d, _, names in os.walk(a):
            for n in names:
                p = os.path.join(d, n)
                before[p] = open(p, "rb").read()
        # a leftover of an interrupted run must not matter
        os.makedirs(os.path.join(root, ".tmp-interrupted"))
        b = configure_synthetic(root=root, seed=0, image_size=(48, 48), num_train=4, num_val=2)
        assert b != a
        assert len(DatasetCatalog.get("fastpan_shapes_train")) == 4
        # generating into an existing complete folder keeps what is there
        generate_synthetic(a, seed=5, image_size=(48, 48), num_train=3, num_val=2)
        for p, data in before.items():
            assert open(p, "rb").read() == data, p
        assert sorted(n for n in os.listdir(root) if not n.startswith(".tmp-interrupted")) == sorted(
            [os.path.basename(a), os.path.basename(b)]
        )  # no temporary folders left behind
    finally:
        configure_synthetic()


def test_separated_form_loads(synthetic_small):
    dicts = DatasetCatalog.get("fastpan_shapes_val_separated")
    pan, inst = load_split(synthetic_small, "val")
    assert len(dicts) == SMALL["num_val"]
    n_things = sum(s["category_id"] <= 5 for a in pan["annotations"] for s in a["segments_info"])
    assert sum(len(d["annotations"]) for d in dicts) == n_things
    assert all(os.path.isfile(d["sem_seg_file_name"]) for d in dicts)
    assert {a["category_id"] for d in dicts for a in d["annotations"]} <= set(range(5))
    assert len(DatasetCatalog.get("fastpan_shapes_val_stuffonly")) == SMALL["num_val"]


def test_foreign_folder_in_the_way_is_a_clear_error(tmp_path):
    target = tmp_path / "v1_seed0_32x32_train1_val1"
    target.mkdir()
    (target / "mine.txt").write_text("not a dataset")
    with pytest.raises(OSError, match="not a complete dataset"):
        generate_synthetic(str(target), seed=0, image_size=(32, 32), num_train=1, num_val=1)
    assert (target / "mine.txt").read_text() == "not a dataset"
    assert os.listdir(tmp_path) == [target.name]  # the temporary folder is gone
