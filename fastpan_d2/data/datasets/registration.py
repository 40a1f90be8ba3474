"""Registering panoptic datasets with path checks and category checks.

Every fastpan_d2 dataset loader checks its folders/files before it reads anything and raises
ONE ``FileNotFoundError`` naming the missing path and how to prepare it; a segment whose
category id the dataset's metadata does not know raises a ``ValueError`` naming the id and the
file. Registration itself never touches the disk, so importing fastpan_d2 works without data.
"""
import json
import os

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.coco_panoptic import register_coco_panoptic_separated

__all__ = [
    "unregister",
    "check_paths",
    "convert_segments_info",
    "load_panoptic_json",
    "register_panoptic_dataset",
    "register_separated_dataset",
]


def unregister(*names):
    """Remove ``names`` from DatasetCatalog and MetadataCatalog (so they can be registered anew)."""
    for name in names:
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
        if name in MetadataCatalog.list():
            MetadataCatalog.remove(name)


def check_paths(dataset_name, paths, how):
    """Raise FileNotFoundError for the first path in ``paths`` that does not exist."""
    for p in paths:
        if p and not os.path.exists(p):
            raise FileNotFoundError(f"{dataset_name} not found at {p}: {how}")


def convert_segments_info(segments_info, meta, json_file, file_name):
    """Dataset category ids -> contiguous ids (+ ``isthing``), in new dicts.

    Raises ValueError naming the id and the files for an id the metadata does not know.
    """
    things = meta["thing_dataset_id_to_contiguous_id"]
    stuff = meta["stuff_dataset_id_to_contiguous_id"]
    out = []
    for seg in segments_info:
        seg = dict(seg)
        cid = seg["category_id"]
        if cid in things:
            seg["category_id"], seg["isthing"] = things[cid], True
        elif cid in stuff:
            seg["category_id"], seg["isthing"] = stuff[cid], False
        else:
            raise ValueError(
                f"Unknown category id {cid} (segment {seg.get('id')}) in {json_file}, annotation "
                f"{file_name}: the dataset's categories are {sorted(things) + sorted(stuff)}"
            )
        out.append(seg)
    return out


def load_panoptic_json(json_file, image_dir, gt_dir, meta, image_ext=".jpg", dataset_name="", how=""):
    """COCO panoptic JSON -> detectron2 dataset dicts (non-separated form), like detectron2's
    ``load_coco_panoptic_json`` but with the image extension as an argument and clear errors."""
    with open(json_file) as f:
        json_info = json.load(f)
    images = {img["id"]: img for img in json_info.get("images", [])}
    ret = []
    for ann in json_info["annotations"]:
        stem = os.path.splitext(ann["file_name"])[0]
        record = {
            "file_name": os.path.join(image_dir, stem + image_ext),
            "image_id": ann["image_id"],
            "pan_seg_file_name": os.path.join(gt_dir, ann["file_name"]),
            "segments_info": convert_segments_info(ann["segments_info"], meta, json_file, ann["file_name"]),
        }
        img = images.get(ann["image_id"])
        if img is not None and "height" in img and "width" in img:
            record["height"], record["width"] = img["height"], img["width"]
        ret.append(record)
    if not ret:
        raise ValueError(f"{dataset_name}: {json_file} has no annotations")
    # Catch a half-prepared dataset here rather than deep inside a data loader worker.
    check_paths(dataset_name, [ret[0]["file_name"], ret[0]["pan_seg_file_name"]], how)
    return ret


def register_panoptic_dataset(
    name,
    metadata,
    image_root,
    panoptic_root,
    panoptic_json,
    how,
    instances_json=None,
    image_ext=".jpg",
    before_load=None,
    evaluator_type="coco_panoptic_seg",
    **extra_metadata,
):
    """Register ``name`` in detectron2's standard (non-separated) panoptic form.

    ``how`` is the preparation step named in the FileNotFoundError; ``before_load`` (optional) is
    called first when the dataset is loaded (e.g. to generate it).
    """
    unregister(name)

    def load():
        if before_load is not None:
            before_load()
        check_paths(name, [image_root, panoptic_root, panoptic_json], how)
        return load_panoptic_json(panoptic_json, image_root, panoptic_root, metadata, image_ext, name, how)

    DatasetCatalog.register(name, load)
    MetadataCatalog.get(name).set(
        panoptic_root=panoptic_root,
        image_root=image_root,
        panoptic_json=panoptic_json,
        json_file=instances_json,
        evaluator_type=evaluator_type,
        ignore_label=255,
        label_divisor=1000,
        **metadata,
        **extra_metadata,
    )


def register_separated_dataset(
    prefix, metadata, image_root, panoptic_root, panoptic_json, sem_seg_root, instances_json, how,
    before_load=None, **extra_metadata,
):  # fmt: skip
    """detectron2's ``register_coco_panoptic_separated`` (``prefix + "_separated"`` and
    ``prefix + "_stuffonly"``), with the paths checked (and ``before_load`` run) first."""
    names = (prefix + "_separated", prefix + "_stuffonly")
    unregister(*names)
    register_coco_panoptic_separated(
        prefix, metadata, image_root, panoptic_root, panoptic_json, sem_seg_root, instances_json
    )
    needs = {
        names[0]: [image_root, instances_json, sem_seg_root, panoptic_root, panoptic_json],
        names[1]: [image_root, sem_seg_root],
    }
    for n in names:
        inner = DatasetCatalog[n]
        DatasetCatalog.remove(n)

        def load(n=n, inner=inner):
            if before_load is not None:
                before_load()
            check_paths(n, needs[n], how)
            return inner()

        DatasetCatalog.register(n, load)
        if extra_metadata:
            MetadataCatalog.get(n).set(**extra_metadata)
