"""The real panoptic datasets, registered under ``$DETECTRON2_DATASETS`` (default ``datasets``).

==================================  ====================================================================
name                                layout under ``$DETECTRON2_DATASETS``
==================================  ====================================================================
coco_2017_{train,val}_panoptic      coco/{train,val}2017/*.jpg, coco/panoptic_{train,val}2017/*.png,
  (+ ``_separated``, Panoptic FPN)  coco/annotations/panoptic_{train,val}2017.json
                                    (+ coco/panoptic_stuff_{train,val}2017/*.png from
                                    tools/prepare_panoptic_separated.py, and
                                    coco/annotations/instances_{train,val}2017.json)
cityscapes_fine_panoptic_{train,val}  cityscapes/leftImg8bit/{train,val}/<city>/*_leftImg8bit.png,
                                    cityscapes/gtFine/cityscapes_panoptic_{train,val}/*.png + .json
                                    (cityscapesscripts' createPanopticImgs)
ade20k_panoptic_{train,val}         ADEChallengeData2016/images/{training,validation}/*.jpg,
                                    ADEChallengeData2016/ade20k_panoptic_{train,val}/*.png + .json
                                    (tools/prepare_ade20k_panoptic.py)
mapillary_vistas_panoptic_{train,val}  mapillary_vistas/{training,validation}/images/*.jpg,
                                    mapillary_vistas/{training,validation}/v1.2/panoptic/*.png and
                                    .../v1.2/panoptic/panoptic_2018.json (the official v1.2 release)
voc_2012_panoptic_{train,val}       VOC2012/JPEGImages/*.jpg (+ SBD images copied there),
                                    VOC2012/panoptic_{train,val}/*.png + VOC2012/panoptic_{train,val}.json
                                    (tools/prepare_voc_panoptic.py; things only, 20 classes)
==================================  ====================================================================

detectron2 registers the COCO and Cityscapes names itself; they are registered again here with
loaders that check their paths first and fail with one clear message.
"""
import json
import os

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.builtin_meta import CITYSCAPES_CATEGORIES, _get_builtin_metadata
from detectron2.data.datasets.cityscapes_panoptic import get_cityscapes_panoptic_files

from .builtin_meta import (
    ADE20K_PANOPTIC_CATEGORIES,
    MAPILLARY_VISTAS_PANOPTIC_CATEGORIES,
    VOC_PANOPTIC_CATEGORIES,
    panoptic_metadata,
)
from .registration import (
    check_paths,
    convert_segments_info,
    register_panoptic_dataset,
    register_separated_dataset,
    unregister,
)

__all__ = ["register_all_builtin", "get_dataset_root"]

_SEE = "(see README 'Datasets')"


def get_dataset_root():
    return os.getenv("DETECTRON2_DATASETS", "datasets")


def register_all_coco_panoptic(root):
    how_std = (
        "download the COCO 2017 images (train2017/, val2017/) and panoptic_annotations_trainval2017.zip "
        f"from cocodataset.org into {os.path.join(root, 'coco')} and unzip the panoptic PNG zips there {_SEE}"
    )
    how_sep = how_std[: -len(_SEE)] + (
        "; then run `python tools/prepare_panoptic_separated.py --coco` for the semantic PNGs and put "
        f"instances_*2017.json (annotations_trainval2017.zip) in {os.path.join(root, 'coco', 'annotations')} {_SEE}"
    )
    # (name, image folder, annotation suffix); val_100 is detectron2's 100-image subset
    for name, images, ann in (
        ("coco_2017_train_panoptic", "train2017", "train2017"),
        ("coco_2017_val_panoptic", "val2017", "val2017"),
        ("coco_2017_val_100_panoptic", "val2017", "val2017_100"),
    ):
        paths = dict(
            image_root=os.path.join(root, "coco", images),
            panoptic_root=os.path.join(root, "coco", f"panoptic_{ann}"),
            panoptic_json=os.path.join(root, "coco", "annotations", f"panoptic_{ann}.json"),
            instances_json=os.path.join(root, "coco", "annotations", f"instances_{ann}.json"),
        )
        register_panoptic_dataset(name, _get_builtin_metadata("coco_panoptic_standard"), how=how_std, **paths)
        register_separated_dataset(
            name,
            _get_builtin_metadata("coco_panoptic_separated"),
            sem_seg_root=os.path.join(root, "coco", f"panoptic_stuff_{ann}"),
            how=how_sep,
            **paths,
        )


def _cityscapes_metadata():
    names = [k["name"] for k in CITYSCAPES_CATEGORIES]
    colors = [list(k["color"]) for k in CITYSCAPES_CATEGORIES]
    return {
        "thing_classes": names,
        "thing_colors": colors,
        "stuff_classes": names,
        "stuff_colors": colors,
        "thing_dataset_id_to_contiguous_id": {
            k["id"]: k["trainId"] for k in CITYSCAPES_CATEGORIES if k["isthing"]
        },
        "stuff_dataset_id_to_contiguous_id": {
            k["id"]: k["trainId"] for k in CITYSCAPES_CATEGORIES if not k["isthing"]
        },
    }


def load_cityscapes_panoptic_checked(image_dir, gt_dir, gt_json, meta, name, how):
    """detectron2's Cityscapes panoptic loading with path and category checks."""
    check_paths(name, [image_dir, gt_dir, gt_json], how)
    with open(gt_json) as f:
        json_info = json.load(f)
    try:
        files = get_cityscapes_panoptic_files(image_dir, gt_dir, json_info)
    except AssertionError as e:  # detectron2 asserts on a missing image / annotation file
        raise FileNotFoundError(f"{name}: {e} (in {image_dir} / {gt_dir}): {how}") from None
    ret = []
    for image_file, label_file, segments_info in files:
        stem = os.path.splitext(os.path.basename(image_file))[0]
        ret.append(
            {
                "file_name": image_file,
                "image_id": "_".join(stem.split("_")[:3]),
                "sem_seg_file_name": image_file.replace("leftImg8bit", "gtFine").split(".")[0]
                + "_labelTrainIds.png",
                "pan_seg_file_name": label_file,
                "segments_info": convert_segments_info(segments_info, meta, gt_json, label_file),
            }
        )
    if not ret:
        raise FileNotFoundError(f"{name}: no images of {gt_json} found in {image_dir}: {how}")
    check_paths(name, [ret[0]["pan_seg_file_name"]], how)
    return ret


def register_all_cityscapes_panoptic(root):
    meta = _cityscapes_metadata()
    for split in ("train", "val"):
        name = f"cityscapes_fine_panoptic_{split}"
        image_dir = os.path.join(root, "cityscapes", "leftImg8bit", split)
        gt_dir = os.path.join(root, "cityscapes", "gtFine", f"cityscapes_panoptic_{split}")
        gt_json = gt_dir + ".json"
        how = (
            "download gtFine_trainvaltest.zip and leftImg8bit_trainvaltest.zip from cityscapes-dataset.com "
            f"into {os.path.join(root, 'cityscapes')} and run cityscapesscripts' createPanopticImgs "
            f"(CITYSCAPES_DATASET={os.path.join(root, 'cityscapes')} "
            f"python -m cityscapesscripts.preparation.createPanopticImgs) {_SEE}"
        )
        unregister(name)
        DatasetCatalog.register(
            name,
            lambda a=(image_dir, gt_dir, gt_json, meta, name, how): load_cityscapes_panoptic_checked(*a),
        )
        MetadataCatalog.get(name).set(
            panoptic_root=gt_dir,
            image_root=image_dir,
            panoptic_json=gt_json,
            gt_dir=os.path.join(root, "cityscapes", "gtFine", split),
            evaluator_type="cityscapes_panoptic_seg",
            ignore_label=255,
            label_divisor=1000,
            **meta,
        )


def register_all_ade20k_panoptic(root):
    base = os.path.join(root, "ADEChallengeData2016")
    how = (
        "download ADEChallengeData2016.zip and the ADE20K instance annotations (annotations_instance/) "
        f"into {base} and run `python tools/prepare_ade20k_panoptic.py` {_SEE}"
    )
    meta = panoptic_metadata(ADE20K_PANOPTIC_CATEGORIES)
    for split, dirname in (("train", "training"), ("val", "validation")):
        register_panoptic_dataset(
            f"ade20k_panoptic_{split}",
            meta,
            image_root=os.path.join(base, "images", dirname),
            panoptic_root=os.path.join(base, f"ade20k_panoptic_{split}"),
            panoptic_json=os.path.join(base, f"ade20k_panoptic_{split}.json"),
            how=how,
        )


def register_all_mapillary_vistas_panoptic(root):
    base = os.path.join(root, "mapillary_vistas")
    how = (
        "download Mapillary Vistas v1.2 (research edition) from mapillary.com/dataset/vistas and unzip it "
        f"into {base} (training/, validation/ with images/ and v1.2/panoptic/) {_SEE}"
    )
    meta = panoptic_metadata(MAPILLARY_VISTAS_PANOPTIC_CATEGORIES)
    for split, dirname in (("train", "training"), ("val", "validation")):
        pan = os.path.join(base, dirname, "v1.2", "panoptic")
        register_panoptic_dataset(
            f"mapillary_vistas_panoptic_{split}",
            meta,
            image_root=os.path.join(base, dirname, "images"),
            panoptic_root=pan,
            panoptic_json=os.path.join(pan, "panoptic_2018.json"),
            how=how,
        )


def register_all_voc_panoptic(root):
    base = os.path.join(root, "VOC2012")
    how = (
        f"put VOCdevkit/VOC2012 at {base} (and optionally SBD's benchmark_RELEASE next to it) and run "
        f"`python tools/prepare_voc_panoptic.py` {_SEE}"
    )
    meta = panoptic_metadata(VOC_PANOPTIC_CATEGORIES)
    for split in ("train", "val"):
        register_panoptic_dataset(
            f"voc_2012_panoptic_{split}",
            meta,
            image_root=os.path.join(base, "JPEGImages"),
            panoptic_root=os.path.join(base, f"panoptic_{split}"),
            panoptic_json=os.path.join(base, f"panoptic_{split}.json"),
            how=how,
        )


def register_all_builtin(root=None):
    """(Re)register every real dataset under ``root`` (default ``$DETECTRON2_DATASETS``)."""
    root = root or get_dataset_root()
    register_all_coco_panoptic(root)
    register_all_cityscapes_panoptic(root)
    register_all_ade20k_panoptic(root)
    register_all_mapillary_vistas_panoptic(root)
    register_all_voc_panoptic(root)
