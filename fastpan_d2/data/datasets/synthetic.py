"""``fastpan_shapes``: the built-in synthetic panoptic dataset.

Generated deterministically from a seed (numpy + cv2) on first use and cached under
``$DETECTRON2_DATASETS/fastpan_shapes/<setting>/`` (one folder per seed, image size and counts,
written into a temporary folder first and renamed into place, so an interrupted run never leaves
half a dataset and an existing dataset is never touched).

Content of an image:

* stuff: the image is split into 2-4 Voronoi regions, each with a different stuff class told
  apart by its texture only (``stripes``, ``checkerboard``, ``noise`` (smooth blobs),
  ``gradient`` (linear ramp)); the colours are drawn at random for every region;
* things: 2-8 instances of 5 classes told apart by their shape only (``disc``, ``square``,
  ``triangle``, ``star``, ``ring``), random rotation and scale (from objects under 1% of the
  image to ~20% of its side as radius), filled with a random colour (contrasting with the
  background below it) plus a faint random texture, occluding each other in drawing order;
  about half of the images get a deliberate overlap of two instances of the same class at the
  second thing, and every later thing overlaps an earlier one of its class with probability 0.2.

Ground truth comes from the drawing, in the layout of COCO panoptic::

    <setting>/{train,val}/000000.jpg                  images
    <setting>/panoptic_{train,val}/000000.png         COCO panoptic PNGs (id = R + 256 G + 256^2 B)
    <setting>/annotations/panoptic_{train,val}.json   COCO panoptic JSON
    <setting>/panoptic_stuff_{train,val}/000000.png   separated semantic PNG (0 things, 1..4 stuff,
                                                      255 void) for register_coco_panoptic_separated
    <setting>/annotations/instances_{train,val}.json  COCO instances JSON (RLE of visible masks)

Category ids: things 1..5, stuff 6..9, so the contiguous ids are things 0..4 and stuff 5..8.
Registered names: ``fastpan_shapes_{train,val}`` (detectron2's standard/non-separated panoptic form,
what fastpan_d2's networks use) and ``fastpan_shapes_{train,val}_separated`` (Panoptic FPN).
"""
import os
import shutil
import tempfile

import cv2
import numpy as np
from pycocotools import mask as mask_util

from .builtin_meta import panoptic_metadata, separated_metadata
from .panoptic_io import (
    segments_info_from_ids,
    semantic_from_panoptic,
    separated_semantic_lut,
    write_json,
    write_panoptic_png,
)
from .registration import register_panoptic_dataset, register_separated_dataset

__all__ = [
    "SYNTHETIC_CATEGORIES",
    "synthetic_setting_dir",
    "generate_synthetic",
    "ensure_synthetic",
    "render_synthetic_image",
    "configure_synthetic",
    "configure_synthetic_from_cfg",
    "get_synthetic_metadata",
    "get_synthetic_separated_metadata",
]

THING_NAMES = ["disc", "square", "triangle", "star", "ring"]
STUFF_NAMES = ["stripes", "checkerboard", "noise", "gradient"]
_COLORS = [
    [220, 20, 60], [0, 130, 200], [255, 180, 0], [60, 180, 75], [145, 30, 180],
    [128, 128, 128], [170, 110, 40], [0, 128, 128], [250, 190, 212],
]  # fmt: skip
SYNTHETIC_CATEGORIES = [
    {"id": i + 1, "name": n, "isthing": 1, "color": _COLORS[i], "supercategory": "shape"}
    for i, n in enumerate(THING_NAMES)
] + [
    {"id": i + 6, "name": n, "isthing": 0, "color": _COLORS[i + 5], "supercategory": "texture"}
    for i, n in enumerate(STUFF_NAMES)
]
SPLITS = ("train", "val")
FORMAT_VERSION = 1  # bump when the generator's output changes, so old caches are not reused

# Generation parameters, relative to the shorter image side where they are lengths.
_R_MIN, _R_MAX = 0.05, 0.2  # thing radius range (log-uniform)
_MIN_VISIBLE = 0.4  # every thing keeps at least this fraction of its drawn area visible
_MIN_THING_AREA = 12  # pixels
_MIN_STUFF_REGION = 0.04  # fraction of the image


# ----------------------------------------------------------------------------------------------
# Drawing
# ----------------------------------------------------------------------------------------------
def _two_colors(rng, contrast):
    c0 = rng.uniform(0, 255, size=3)
    d = rng.normal(size=3)
    d = d / (np.linalg.norm(d) + 1e-6) * contrast
    c1 = np.clip(c0 + d, 0, 255)
    return c0.astype(np.float32), c1.astype(np.float32)


def _texture_field(kind, rng, h, w, scale):
    """A field in [0, 1] of shape (h, w) with the texture of stuff class ``kind``."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    theta = rng.uniform(0, np.pi)
    u = xx * np.cos(theta) + yy * np.sin(theta)
    v = -xx * np.sin(theta) + yy * np.cos(theta)
    if kind == "stripes":
        period = rng.uniform(0.05, 0.11) * scale
        return (np.sin(2 * np.pi * u / period) > 0).astype(np.float32)
    if kind == "checkerboard":
        p = rng.uniform(0.04, 0.09) * scale
        return ((np.floor(u / p) + np.floor(v / p)) % 2).astype(np.float32)
    if kind == "noise":
        cells = max(2, int(round(scale / rng.uniform(10, 16))))
        g = rng.random((cells + 1, cells + 1)).astype(np.float32)
        f = cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC)
        return np.clip((f - f.min()) / (f.max() - f.min() + 1e-6), 0, 1)
    if kind == "gradient":
        return (u - u.min()) / (u.max() - u.min() + 1e-6)
    raise ValueError(kind)


def _stuff_layout(rng, h, w):
    """Label map (h, w) of 2-4 Voronoi regions, each of at least _MIN_STUFF_REGION of the image."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for _ in range(20):
        k = int(rng.integers(2, 5))
        pts = rng.uniform(0, 1, size=(k, 2)) * [h, w]
        wts = rng.uniform(0.7, 1.4, size=k)  # weighted Voronoi: curved-ish, uneven boundaries
        d = ((yy[None] - pts[:, 0, None, None]) ** 2 + (xx[None] - pts[:, 1, None, None]) ** 2) * wts[
            :, None, None
        ]
        lab = d.argmin(0)
        if np.bincount(lab.ravel(), minlength=k).min() >= _MIN_STUFF_REGION * h * w:
            return lab, k
    return lab, k


def _shape_mask(cls, rng, h, w, cy, cx, r):
    """Bool mask (h, w) of thing class ``cls`` (index into THING_NAMES) centred at (cy, cx)."""
    m = np.zeros((h, w), np.uint8)
    sh = 4  # sub-pixel precision for cv2 drawing
    one = 1 << sh
    c = (int(round(cx * one)), int(round(cy * one)))
    name = THING_NAMES[cls]
    rot = rng.uniform(0, 2 * np.pi)
    if name == "disc":
        cv2.circle(m, c, int(round(r * one)), 1, -1, cv2.LINE_8, sh)
    elif name == "ring":
        cv2.circle(m, c, int(round(r * one)), 1, -1, cv2.LINE_8, sh)
        cv2.circle(m, c, int(round(r * rng.uniform(0.45, 0.6) * one)), 0, -1, cv2.LINE_8, sh)
    else:
        if name == "square":
            ang = rot + np.arange(4) * np.pi / 2
            rad = np.full(4, r)
        elif name == "triangle":
            ang = rot + np.arange(3) * 2 * np.pi / 3
            rad = np.full(3, r * 1.15)
        else:  # star
            ang = rot + np.arange(10) * np.pi / 5
            rad = np.where(np.arange(10) % 2 == 0, r * 1.15, r * 0.45)
        pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1)
        cv2.fillPoly(m, [np.round(pts * one).astype(np.int32)], 1, cv2.LINE_8, sh)
    return m.astype(bool)


def render_synthetic_image(rng, image_size):
    """Draw one image. Returns (image uint8 HxWx3 RGB, segment map int32 HxW with ids 1..N,
    segments: list of (segment id, dataset category id)).
    """
    h, w = image_size
    scale = float(min(h, w))
    img = np.zeros((h, w, 3), np.float32)
    seg = np.zeros((h, w), np.int32)
    segments = []

    # --- stuff ---
    lab, k = _stuff_layout(rng, h, w)
    stuff_cls = rng.choice(len(STUFF_NAMES), size=k, replace=False)
    for j in range(k):
        kind = STUFF_NAMES[stuff_cls[j]]
        c0, c1 = _two_colors(rng, rng.uniform(70, 150))
        t = _texture_field(kind, rng, h, w, scale)
        region = lab == j
        img[region] = (c0 + t[..., None] * (c1 - c0))[region]
        seg[region] = j + 1
        segments.append((j + 1, 6 + int(stuff_cls[j])))

    # --- things ---
    n = int(rng.integers(2, 9))
    same_class_overlap = rng.random() < 0.5
    drawn = []  # (segment id, drawn mask, class, centre y, centre x, radius)
    next_id = k + 1
    for i in range(n):
        for _attempt in range(15):
            r = float(np.exp(rng.uniform(np.log(_R_MIN * scale), np.log(_R_MAX * scale))))
            if drawn and ((same_class_overlap and i == 1) or rng.random() < 0.2):
                # another instance of the same class, overlapping an earlier one
                _, _, cls, cy0, cx0, r0 = drawn[int(rng.integers(0, len(drawn)))]
                a = rng.uniform(0, 2 * np.pi)
                dist = rng.uniform(0.55, 0.95) * (r0 + r)
                cy, cx = cy0 + dist * np.sin(a), cx0 + dist * np.cos(a)
            else:
                cls = int(rng.integers(0, len(THING_NAMES)))
                cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            m = _shape_mask(cls, rng, h, w, cy, cx, r)
            if m.sum() < _MIN_THING_AREA:
                continue
            # every earlier thing must stay mostly visible
            ok = all(
                ((seg == d[0]) & ~m).sum() >= max(_MIN_VISIBLE * d[1].sum(), _MIN_THING_AREA)
                for d in drawn
            )
            if ok:
                break
        else:
            continue
        bg = img[m].mean(0)
        for _ in range(10):  # a fill colour far from the background under the thing
            base = rng.uniform(0, 255, size=3).astype(np.float32)
            if np.abs(base - bg).sum() > 120:
                break
        fill_kind = STUFF_NAMES[int(rng.integers(0, len(STUFF_NAMES)))]
        t = _texture_field(fill_kind, rng, h, w, scale) - 0.5
        amp = rng.uniform(0, 40)
        img[m] = np.clip(base + amp * t[..., None], 0, 255)[m]
        seg[m] = next_id
        segments.append((next_id, 1 + cls))
        drawn.append((next_id, m, cls, cy, cx, r))
        next_id += 1

    img += rng.normal(0, 3, size=img.shape).astype(np.float32)
    img = np.clip(np.round(img), 0, 255).astype(np.uint8)
    # Drop segments that ended up fully occluded (stuff under things).
    present = np.bincount(seg.ravel(), minlength=next_id)
    segments = [(sid, cat) for sid, cat in segments if present[sid] > 0]
    return img, seg, segments


# ----------------------------------------------------------------------------------------------
# Ground truth files
# ----------------------------------------------------------------------------------------------
def _write_png(path, gray):
    if not cv2.imwrite(path, np.ascontiguousarray(gray)):
        raise OSError(f"Cannot write {path}")


def _generate_split(out_dir, split, seed, image_size, num):
    h, w = image_size
    img_dir = os.path.join(out_dir, split)
    pan_dir = os.path.join(out_dir, f"panoptic_{split}")
    sem_dir = os.path.join(out_dir, f"panoptic_stuff_{split}")
    for d in (img_dir, pan_dir, sem_dir):
        os.makedirs(d)
    sem_lut = separated_semantic_lut(SYNTHETIC_CATEGORIES)
    split_key = SPLITS.index(split)
    images, pan_anns, inst_anns = [], [], []
    for i in range(num):
        rng = np.random.default_rng([seed, split_key, i])
        img, seg, segments = render_synthetic_image(rng, (h, w))
        stem = f"{i:06d}"
        cv2.imwrite(os.path.join(img_dir, stem + ".jpg"), img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
        write_panoptic_png(os.path.join(pan_dir, stem + ".png"), seg)
        infos = segments_info_from_ids(seg, dict(segments))
        _write_png(os.path.join(sem_dir, stem + ".png"), semantic_from_panoptic(seg, infos, sem_lut))
        for s in infos:
            if s["category_id"] <= 5:  # things
                rle = mask_util.encode(np.asfortranarray(seg == s["id"]))
                rle["counts"] = rle["counts"].decode("ascii")
                inst_anns.append(
                    {
                        "id": len(inst_anns) + 1,
                        "image_id": i,
                        "category_id": s["category_id"],
                        "segmentation": rle,
                        "area": s["area"],
                        "bbox": s["bbox"],
                        "iscrowd": 0,
                    }
                )
        images.append({"id": i, "file_name": stem + ".jpg", "height": h, "width": w})
        pan_anns.append({"image_id": i, "file_name": stem + ".png", "segments_info": infos})
    info = {"description": f"fastpan_shapes {split} (seed {seed}, {h}x{w}, {num} images)"}
    ann_dir = os.path.join(out_dir, "annotations")
    os.makedirs(ann_dir, exist_ok=True)
    write_json(
        os.path.join(ann_dir, f"panoptic_{split}.json"),
        {"info": info, "images": images, "annotations": pan_anns, "categories": SYNTHETIC_CATEGORIES},
    )
    write_json(
        os.path.join(ann_dir, f"instances_{split}.json"),
        {
            "info": info,
            "images": images,
            "annotations": inst_anns,
            "categories": [c for c in SYNTHETIC_CATEGORIES if c["isthing"]],
        },
    )


def synthetic_setting_dir(root, seed, image_size, num_train, num_val):
    h, w = (int(s) for s in image_size)
    name = f"v{FORMAT_VERSION}_seed{int(seed)}_{h}x{w}_train{int(num_train)}_val{int(num_val)}"
    return os.path.join(root, name)


def generate_synthetic(out_dir, seed=0, image_size=(128, 128), num_train=300, num_val=50):
    """Write the dataset to ``out_dir`` (which must not exist), atomically: everything is written
    into a temporary sibling folder that is renamed to ``out_dir`` at the end. If another process
    finished the same folder first, its result is kept and ours discarded."""
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-" + os.path.basename(out_dir) + "-", dir=parent)
    try:
        for split, num in zip(SPLITS, (num_train, num_val)):
            _generate_split(tmp, split, int(seed), tuple(int(s) for s in image_size), int(num))
        settings = {"seed": seed, "image_size": list(image_size), "num_train": num_train,
                    "num_val": num_val, "format_version": FORMAT_VERSION}  # fmt: skip
        write_json(os.path.join(tmp, "settings.json"), settings)
        try:
            os.rename(tmp, out_dir)
        except OSError as e:
            if not os.path.isfile(os.path.join(out_dir, "settings.json")):
                raise OSError(
                    f"Cannot create the synthetic dataset at {out_dir}: it exists but is not a complete "
                    f"dataset (no settings.json); delete it and retry ({e})"
                ) from None
            # else: another process finished the same setting first; keep its result
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def ensure_synthetic(out_dir, seed=0, image_size=(128, 128), num_train=300, num_val=50):
    """Generate the dataset into ``out_dir`` unless it is already complete there."""
    if not os.path.isfile(os.path.join(out_dir, "settings.json")):
        generate_synthetic(out_dir, seed, image_size, num_train, num_val)
    return out_dir


# ----------------------------------------------------------------------------------------------
# Registration
# ----------------------------------------------------------------------------------------------
def get_synthetic_metadata():
    """detectron2's standard (non-separated) panoptic metadata: stuff_classes lists all classes."""
    return panoptic_metadata(SYNTHETIC_CATEGORIES)


def get_synthetic_separated_metadata():
    """Metadata of the separated form (Panoptic FPN): thing classes 0..4, stuff 0 = "things", 1..4."""
    return separated_metadata(SYNTHETIC_CATEGORIES)


def _default_root():
    return os.path.join(os.getenv("DETECTRON2_DATASETS", "datasets"), "fastpan_shapes")


def configure_synthetic(root=None, seed=0, image_size=(128, 128), num_train=300, num_val=50):
    """(Re)register ``fastpan_shapes_{train,val}`` and their ``_separated`` forms with these options.

    Nothing is generated here: the first ``DatasetCatalog.get`` of any of the names generates the
    whole setting (both splits); the MetadataCatalog paths are final already, so
    COCOPanopticEvaluator finds the ground truth once the data was loaded once.
    Returns the setting folder.
    """
    root = os.path.abspath(root or _default_root())
    image_size = tuple(int(s) for s in image_size)
    out_dir = synthetic_setting_dir(root, seed, image_size, num_train, num_val)

    def ensure():
        ensure_synthetic(out_dir, seed, image_size, num_train, num_val)

    how = f"generating it failed; delete {out_dir} and retry"
    for split in SPLITS:
        name = f"fastpan_shapes_{split}"
        paths = dict(
            image_root=os.path.join(out_dir, split),
            panoptic_root=os.path.join(out_dir, f"panoptic_{split}"),
            panoptic_json=os.path.join(out_dir, "annotations", f"panoptic_{split}.json"),
            instances_json=os.path.join(out_dir, "annotations", f"instances_{split}.json"),
        )
        register_panoptic_dataset(
            name, get_synthetic_metadata(), how=how, before_load=ensure, synthetic_dir=out_dir, **paths
        )
        register_separated_dataset(
            name,
            get_synthetic_separated_metadata(),
            sem_seg_root=os.path.join(out_dir, f"panoptic_stuff_{split}"),
            how=how,
            before_load=ensure,
            synthetic_dir=out_dir,
            **paths,
        )
    return out_dir


def configure_synthetic_from_cfg(cfg):
    """Register the synthetic dataset with ``cfg.DATASETS.SYNTHETIC.{ROOT,SEED,IMAGE_SIZE,NUM_*}``."""
    s = cfg.DATASETS.SYNTHETIC
    return configure_synthetic(
        root=s.ROOT or None,
        seed=s.SEED,
        image_size=tuple(s.IMAGE_SIZE),
        num_train=s.NUM_TRAIN,
        num_val=s.NUM_VAL,
    )
