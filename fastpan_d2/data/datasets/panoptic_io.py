"""Reading and writing COCO-panoptic ground truth (PNG ids + JSON), shared by the synthetic
generator and the dataset preparation scripts in tools/."""
import json
import os

import cv2
import numpy as np

__all__ = [
    "id2rgb",
    "read_panoptic_png",
    "write_panoptic_png",
    "segment_stats",
    "semantic_from_panoptic",
    "separated_semantic_lut",
    "write_json",
    "segments_info_from_ids",
    "write_panoptic_dataset",
]


def id2rgb(ids):
    """Segment id map (H, W) -> COCO panoptic colours (H, W, 3) uint8, id = R + 256 G + 256^2 B."""
    ids = np.asarray(ids, np.int64)
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536 % 256], -1).astype(np.uint8)


def read_panoptic_png(path):
    """COCO panoptic PNG -> segment id map (H, W) int64."""
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"Cannot read panoptic PNG {path}")
    bgr = bgr.astype(np.int64)
    return bgr[..., 2] + 256 * bgr[..., 1] + 65536 * bgr[..., 0]


def write_panoptic_png(path, ids):
    if not cv2.imwrite(path, id2rgb(ids)[..., ::-1]):
        raise OSError(f"Cannot write {path}")


def segment_stats(ids):
    """For every non-zero id of the map: ``{id: (area, [x, y, w, h])}`` (tight COCO box), in one
    pass over the pixels."""
    flat = ids.ravel()
    labels, inv = np.unique(flat, return_inverse=True)
    h, w = ids.shape
    ys, xs = np.divmod(np.arange(flat.size), w)
    n = len(labels)
    area = np.bincount(inv, minlength=n)
    x0 = np.full(n, w)
    y0 = np.full(n, h)
    x1 = np.full(n, -1)
    y1 = np.full(n, -1)
    np.minimum.at(x0, inv, xs)
    np.minimum.at(y0, inv, ys)
    np.maximum.at(x1, inv, xs)
    np.maximum.at(y1, inv, ys)
    return {
        int(lab): (int(area[i]), [int(x0[i]), int(y0[i]), int(x1[i] - x0[i] + 1), int(y1[i] - y0[i] + 1)])
        for i, lab in enumerate(labels)
        if lab != 0
    }


def separated_semantic_lut(categories):
    """{dataset category id: label} of detectron2's separated semantic PNGs: every thing -> 0,
    the stuff categories (in ascending id order) -> 1..S."""
    stuff = sorted(c["id"] for c in categories if not c["isthing"])
    lut = {c["id"]: 0 for c in categories if c["isthing"]}
    lut.update({cid: i + 1 for i, cid in enumerate(stuff)})
    return lut


def semantic_from_panoptic(ids, segments_info, category_to_label, void=255):
    """Per-pixel label map (uint8) from a segment id map: each segment's pixels get
    ``category_to_label[its category_id]``; pixels of id 0 or of unlisted segments get ``void``."""
    seg_ids = np.array([s["id"] for s in segments_info] + [0], np.int64)
    labels = np.array([category_to_label[s["category_id"]] for s in segments_info] + [void], np.uint8)
    order = np.argsort(seg_ids)
    pos = np.searchsorted(seg_ids[order], ids)
    pos = np.clip(pos, 0, len(seg_ids) - 1)
    found = seg_ids[order][pos] == ids
    return np.where(found, labels[order][pos], void).astype(np.uint8)


def write_json(path, obj):
    """Write JSON atomically (temporary file + rename)."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def segments_info_from_ids(ids, category_of):
    """COCO ``segments_info`` of an id map: ``category_of`` maps segment id -> dataset category id;
    ids absent from the map (fully occluded) are left out."""
    stats = segment_stats(ids)
    return [
        {"id": int(sid), "category_id": int(cat), "iscrowd": 0, "area": stats[sid][0], "bbox": stats[sid][1]}
        for sid, cat in category_of.items()
        if sid in stats
    ]


def _convert_and_write(args):
    convert_fn, item, png_dir = args
    image_info, ids, category_of = convert_fn(item)
    stem = os.path.splitext(image_info["file_name"])[0]
    write_panoptic_png(os.path.join(png_dir, stem + ".png"), ids)
    ann = {
        "image_id": image_info["id"],
        "file_name": stem + ".png",
        "segments_info": segments_info_from_ids(ids, category_of),
    }
    return image_info, ann


def write_panoptic_dataset(items, convert_fn, png_dir, categories, workers=None, log_every=1000):
    """Convert every item with ``convert_fn(item) -> (image_info, ids, {segment id: category id})``
    (``image_info``: COCO image dict with id, file_name, height, width) into COCO panoptic PNGs in
    ``png_dir`` and the JSON ``png_dir + ".json"`` (written last, atomically). ``convert_fn`` must be
    a module-level function when ``workers != 0`` (it runs in a process pool)."""
    from multiprocessing import Pool

    os.makedirs(png_dir, exist_ok=True)
    json_file = png_dir.rstrip("/") + ".json"
    jobs = [(convert_fn, it, png_dir) for it in items]
    images, anns = [], []

    def collect(results):
        for k, (img, ann) in enumerate(results):
            images.append(img)
            anns.append(ann)
            if log_every and (k + 1) % log_every == 0:
                print(f"{json_file}: {k + 1}/{len(jobs)}", flush=True)

    if workers == 0 or len(jobs) < 64:
        collect(map(_convert_and_write, jobs))
    else:
        with Pool(workers) as pool:
            collect(pool.imap(_convert_and_write, jobs, chunksize=16))
    write_json(json_file, {"images": images, "annotations": anns, "categories": categories})
    print(f"{json_file}: {len(anns)} images", flush=True)
    return len(anns)
