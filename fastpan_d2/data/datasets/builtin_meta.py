"""Category tables of the real panoptic datasets detectron2 does not describe itself.

Each table is a list of ``{"id", "name", "isthing", "color"}`` dicts in the order of the
contiguous ids (detectron2's non-separated convention: ``stuff_classes`` lists all of them).
"""
import colorsys

from detectron2.data.datasets.builtin_meta import ADE20K_SEM_SEG_CATEGORIES


def _palette(n, seed_hue=0.13):
    """n well-separated colours (golden-ratio hue walk), for datasets without official colours."""
    out = []
    for i in range(n):
        h = (seed_hue + i * 0.618033988749895) % 1.0
        s = 0.55 + 0.4 * ((i * 7) % 5) / 4
        v = 0.6 + 0.4 * ((i * 3) % 4) / 3
        out.append([int(round(255 * c)) for c in colorsys.hsv_to_rgb(h, s, v)])
    return out


# ADE20K panoptic (150 classes of the scene-parsing benchmark, category id = index 0..149).
# The 50 stuff classes; the other 100 are the things of the ADE20K instance benchmark.
_ADE20K_STUFF = {
    0, 1, 2, 3, 4, 5, 6, 9, 11, 13, 16, 17, 21, 25, 26, 28, 29, 34, 40, 46, 48, 51, 52, 54, 59,
    60, 61, 63, 68, 77, 79, 84, 91, 94, 96, 99, 100, 101, 105, 106, 109, 113, 114, 117, 122,
    128, 131, 140, 141, 145,
}  # fmt: skip
ADE20K_PANOPTIC_CATEGORIES = [
    {"id": i, "name": name.strip(), "isthing": int(i not in _ADE20K_STUFF), "color": color}
    for i, (name, color) in enumerate(zip(ADE20K_SEM_SEG_CATEGORIES, _palette(150)))
]

# Mapillary Vistas v1.2 panoptic (panoptic_2018.json): 65 classes, ids 1..65, 37 things.
_MAPILLARY = [
    ("Bird", 1, [165, 42, 42]), ("Ground Animal", 1, [0, 192, 0]), ("Curb", 0, [196, 196, 196]),
    ("Fence", 0, [190, 153, 153]), ("Guard Rail", 0, [180, 165, 180]), ("Barrier", 0, [90, 120, 150]),
    ("Wall", 0, [102, 102, 156]), ("Bike Lane", 0, [128, 64, 255]),
    ("Crosswalk - Plain", 1, [140, 140, 200]), ("Curb Cut", 0, [170, 170, 170]),
    ("Parking", 0, [250, 170, 160]), ("Pedestrian Area", 0, [96, 96, 96]),
    ("Rail Track", 0, [230, 150, 140]), ("Road", 0, [128, 64, 128]), ("Service Lane", 0, [110, 110, 110]),
    ("Sidewalk", 0, [244, 35, 232]), ("Bridge", 0, [150, 100, 100]), ("Building", 0, [70, 70, 70]),
    ("Tunnel", 0, [150, 120, 90]), ("Person", 1, [220, 20, 60]), ("Bicyclist", 1, [255, 0, 0]),
    ("Motorcyclist", 1, [255, 0, 100]), ("Other Rider", 1, [255, 0, 200]),
    ("Lane Marking - Crosswalk", 1, [200, 128, 128]), ("Lane Marking - General", 0, [255, 255, 255]),
    ("Mountain", 0, [64, 170, 64]), ("Sand", 0, [230, 160, 50]), ("Sky", 0, [70, 130, 180]),
    ("Snow", 0, [190, 255, 255]), ("Terrain", 0, [152, 251, 152]), ("Vegetation", 0, [107, 142, 35]),
    ("Water", 0, [0, 170, 30]), ("Banner", 1, [255, 255, 128]), ("Bench", 1, [250, 0, 30]),
    ("Bike Rack", 1, [100, 140, 180]), ("Billboard", 1, [220, 220, 220]),
    ("Catch Basin", 1, [220, 128, 128]), ("CCTV Camera", 1, [222, 40, 40]),
    ("Fire Hydrant", 1, [100, 170, 30]), ("Junction Box", 1, [40, 40, 40]), ("Mailbox", 1, [33, 33, 33]),
    ("Manhole", 1, [100, 128, 160]), ("Phone Booth", 1, [142, 0, 0]), ("Pothole", 0, [70, 100, 150]),
    ("Street Light", 1, [210, 170, 100]), ("Pole", 1, [153, 153, 153]),
    ("Traffic Sign Frame", 1, [128, 128, 128]), ("Utility Pole", 1, [0, 0, 80]),
    ("Traffic Light", 1, [250, 170, 30]), ("Traffic Sign (Back)", 1, [192, 192, 192]),
    ("Traffic Sign (Front)", 1, [220, 220, 0]), ("Trash Can", 1, [140, 140, 20]),
    ("Bicycle", 1, [119, 11, 32]), ("Boat", 1, [150, 0, 255]), ("Bus", 1, [0, 60, 100]),
    ("Car", 1, [0, 0, 142]), ("Caravan", 1, [0, 0, 90]), ("Motorcycle", 1, [0, 0, 230]),
    ("On Rails", 0, [0, 80, 100]), ("Other Vehicle", 1, [128, 64, 64]), ("Trailer", 1, [0, 0, 110]),
    ("Truck", 1, [0, 0, 70]), ("Wheeled Slow", 1, [0, 0, 192]), ("Car Mount", 0, [32, 32, 32]),
    ("Ego Vehicle", 0, [120, 10, 10]),
]  # fmt: skip
MAPILLARY_VISTAS_PANOPTIC_CATEGORIES = [
    {"id": i + 1, "name": n, "isthing": t, "color": c} for i, (n, t, c) in enumerate(_MAPILLARY)
]

# Pascal VOC 2012 (+SBD) panoptic: the 20 object classes, all things (ids 1..20 = VOC class
# indices); background and the 255 boundary band are void.
_VOC_NAMES = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
]  # fmt: skip
_VOC_COLORS = [
    [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128], [128, 0, 128], [0, 128, 128],
    [128, 128, 128], [64, 0, 0], [192, 0, 0], [64, 128, 0], [192, 128, 0], [64, 0, 128],
    [192, 0, 128], [64, 128, 128], [192, 128, 128], [0, 64, 0], [128, 64, 0], [0, 192, 0],
    [128, 192, 0], [0, 64, 128],
]  # fmt: skip
VOC_PANOPTIC_CATEGORIES = [
    {"id": i + 1, "name": n, "isthing": 1, "color": c} for i, (n, c) in enumerate(zip(_VOC_NAMES, _VOC_COLORS))
]


def panoptic_metadata(categories):
    """detectron2's standard (non-separated) panoptic metadata of a category table."""
    names = [c["name"] for c in categories]
    colors = [list(c["color"]) for c in categories]
    return {
        "thing_classes": names,
        "thing_colors": colors,
        "stuff_classes": names,
        "stuff_colors": colors,
        "thing_dataset_id_to_contiguous_id": {c["id"]: i for i, c in enumerate(categories) if c["isthing"]},
        "stuff_dataset_id_to_contiguous_id": {
            c["id"]: i for i, c in enumerate(categories) if not c["isthing"]
        },
    }


def separated_metadata(categories):
    """detectron2's separated metadata (Panoptic FPN): things 0..T-1; stuff 0 = "things", 1..S."""
    things = [c for c in categories if c["isthing"]]
    stuff = [c for c in categories if not c["isthing"]]
    stuff_map = {c["id"]: i + 1 for i, c in enumerate(stuff)}
    stuff_map[0] = 0
    return {
        "thing_classes": [c["name"] for c in things],
        "thing_colors": [list(c["color"]) for c in things],
        "thing_dataset_id_to_contiguous_id": {c["id"]: i for i, c in enumerate(things)},
        "stuff_classes": ["things"] + [c["name"] for c in stuff],
        "stuff_colors": [[82, 18, 128]] + [list(c["color"]) for c in stuff],
        "stuff_dataset_id_to_contiguous_id": stuff_map,
    }
