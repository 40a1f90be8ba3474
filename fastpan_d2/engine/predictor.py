"""Inference on images that are not in a dataset: what ``demo/demo.py`` (and the export tool) share.

* ``PanopticPredictor``: detectron2's ``DefaultPredictor`` for every fastpan_d2 network and for
  detectron2's own models: builds the model, loads ``MODEL.WEIGHTS``, resizes with the config's
  test-time augmentation (``build_augmentations(cfg, is_train=False)``: ``ResizeShortestEdge`` with
  ``INPUT.MIN_SIZE_TEST``/``MAX_SIZE_TEST``, or EPSNet's fixed ``INPUT.FIXED_SIZE``), converts to
  ``INPUT.FORMAT`` and returns the model's output for the image at its own size.
* ``read_image``: any image Pillow or OpenCV decodes (grayscale, palette, RGBA / LA, 16-bit,
  float) as an 8-bit 3-channel array.
* ``set_confidence_threshold``: one score threshold mapped onto each network's test-time keys
  (``CONFIDENCE_THRESHOLD_KEYS``).
* ``resolve_config_file``: a config path, or a name in detectron2's model zoo.
"""
import logging
import os

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import MetadataCatalog
from detectron2.data import transforms as T
from detectron2.modeling import build_model

from ..data.transforms import build_augmentations
from .defaults import UserInputError

logger = logging.getLogger(__name__)

# META_ARCHITECTURE -> the test-time keys that ``--confidence-threshold t`` sets to t. The first
# decides which detections / queries become thing segments; the others are the detector's own
# candidate thresholds on the same score, set alike (as detectron2's demo does), so that a t below
# their default takes effect. For t at or above a candidate threshold the panoptic output is the
# same as setting the first key alone: no dropped candidate could have suppressed a kept one.
CONFIDENCE_THRESHOLD_KEYS = {
    "EPSNet": ("MODEL.EPSNET.INSTANCE_SCORE_THRESH", "MODEL.EPSNET.SCORE_THRESH"),
    # The detections above the threshold are the attention masks; there is no later threshold.
    "FPSNet": ("MODEL.RETINANET.SCORE_THRESH_TEST",),
    # Candidates are thresholded on the class confidence, pasting on confidence x border-ness.
    "LPSNet": ("MODEL.LPSNET.PANOPTIC.MIN_SCORE", "MODEL.LPSNET.SCORE_THRESH_TEST"),
    "SingleShotPanoptic": ("MODEL.SINGLE_SHOT.PANOPTIC.SCORE_THRESH", "MODEL.RETINANET.SCORE_THRESH_TEST"),
    # A query becomes a segment if its best class probability is above the threshold.
    "YOSO": ("MODEL.YOSO.TEST.OBJECT_MASK_THRESHOLD",),
    "PanopticFPN": ("MODEL.PANOPTIC_FPN.COMBINE.INSTANCES_CONFIDENCE_THRESH", "MODEL.ROI_HEADS.SCORE_THRESH_TEST"),
}


def set_confidence_threshold(cfg, threshold):
    """Set every key of ``CONFIDENCE_THRESHOLD_KEYS[cfg.MODEL.META_ARCHITECTURE]`` to ``threshold``
    (a mutable ``cfg``). Returns the keys set."""
    meta_arch = cfg.MODEL.META_ARCHITECTURE
    if meta_arch not in CONFIDENCE_THRESHOLD_KEYS:
        raise UserInputError(
            f"--confidence-threshold: no known score threshold for META_ARCHITECTURE {meta_arch!r} "
            f"(known: {', '.join(sorted(CONFIDENCE_THRESHOLD_KEYS))}); set its keys with --opts instead"
        )
    if not 0.0 <= threshold <= 1.0:
        raise UserInputError(f"--confidence-threshold must be in [0, 1], got {threshold}")
    keys = CONFIDENCE_THRESHOLD_KEYS[meta_arch]
    cfg.merge_from_list([item for key in keys for item in (key, float(threshold))])
    return keys


def resolve_config_file(path):
    """``path`` if it is a file, else the detectron2 model-zoo config of that name."""
    if os.path.isfile(path):
        return path
    from detectron2 import model_zoo

    try:
        return model_zoo.get_config_file(path)
    except RuntimeError:
        raise UserInputError(f"config file does not exist (neither a file nor a model-zoo config): {path}") from None


# ------------------------------------------------------------------------------------ images
def to_rgb8(array, background=255):
    """An image array of any layout a reader returns -> (H, W, 3) uint8, colour channels in their order.

    Values: uint8 as they are; other integer types are read as 16-bit (0..65535 -> 0..255,
    x / 257 rounded, values outside clipped); floats as 0..1 if none is above 1, else as 0..255
    (clipped). Channels: (H, W) / (H, W, 1) grey is repeated; (H, W, 2) is grey + alpha; a fourth
    channel is alpha. Alpha is composited over a ``background`` grey level (white by default).
    """
    a = np.asarray(array)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"not an image array: shape {a.shape}")
    if a.dtype == np.uint8:
        a = a.astype(np.float32)
    elif np.issubdtype(a.dtype, np.integer) or a.dtype == bool:
        a = np.clip(a.astype(np.float64), 0, 65535) / 257.0
    elif np.issubdtype(a.dtype, np.floating):
        a = np.nan_to_num(a.astype(np.float32))
        a = np.clip(a * 255.0 if a.max(initial=0.0) <= 1.0 else a, 0, 255)
    else:
        raise ValueError(f"unsupported pixel type {a.dtype}")
    colour, alpha = (a[:, :, :-1], a[:, :, -1:]) if a.shape[2] in (2, 4) else (a, None)
    if alpha is not None:
        colour = colour * (alpha / 255.0) + background * (1.0 - alpha / 255.0)
    if colour.shape[2] == 1:
        colour = np.repeat(colour, 3, axis=2)
    return np.ascontiguousarray(np.rint(colour).astype(np.uint8))


_PILLOW_TO_NUMPY_MODES = {"1": "L", "P": None, "PA": "RGBA", "RGBa": "RGBA", "La": "LA", "CMYK": "RGB",
                          "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB"}


def _read_with_pillow(path):
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)  # photos taken upright, stored rotated
        if im.mode in _PILLOW_TO_NUMPY_MODES:
            target = _PILLOW_TO_NUMPY_MODES[im.mode]
            if im.mode == "P":  # palette: keep its transparency, if it has one
                target = "RGBA" if "transparency" in im.info else "RGB"
            im = im.convert(target)
        return np.asarray(im)  # L, LA, RGB, RGBA, I;16*, I, F (16-bit RGB PNGs arrive as 8-bit RGB)


def image_is_readable(path):
    """Whether Pillow or OpenCV recognises ``path`` as an image (reads the header only)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path):
            return True
    except (UnidentifiedImageError, OSError, ValueError):
        pass
    import cv2

    try:
        return bool(cv2.haveImageReader(path))
    except cv2.error:
        return False


def read_image(path, format="RGB"):
    """Read any image Pillow (or else OpenCV) decodes as (H, W, 3) uint8 in ``format`` ("RGB" or
    "BGR"), EXIF orientation applied; see ``to_rgb8`` for grey, alpha, 16-bit and float images.
    Raises ``UserInputError`` naming the file if it is missing or cannot be decoded."""
    if format not in ("RGB", "BGR"):
        raise ValueError(f"format must be RGB or BGR, got {format!r}")
    if not os.path.isfile(path):
        raise UserInputError(f"input image does not exist: {path}")
    try:
        rgb = to_rgb8(_read_with_pillow(path))
    except Exception as pillow_error:
        import cv2

        array = cv2.imread(path, cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
        if array is None:
            raise UserInputError(f"cannot read image {path} (neither Pillow nor OpenCV decodes it: "
                                 f"{pillow_error})") from None
        array = np.atleast_3d(array)
        order = [2, 1, 0, 3][: array.shape[2]] if array.shape[2] in (3, 4) else slice(None)
        rgb = to_rgb8(array[:, :, order])  # OpenCV's BGR(A) -> RGB(A)
    return rgb if format == "RGB" else rgb[:, :, ::-1]


# ------------------------------------------------------------------------------------ predictor
def load_weights(model, weights):
    """``DetectionCheckpointer(model).load(weights)``; "" keeps the random initialisation (with a
    warning); a local path that does not exist is a ``UserInputError``. URLs go to detectron2."""
    if not weights:
        logger.warning("MODEL.WEIGHTS is empty: the model keeps its random initialisation")
        return
    if "://" not in weights and not os.path.isfile(weights):
        raise UserInputError(f"MODEL.WEIGHTS does not exist: {weights}")
    DetectionCheckpointer(model).load(weights)


class PanopticPredictor:
    """detectron2's ``DefaultPredictor`` with the config's own test-time resize.

    ``predictor(image)`` takes one (H, W, 3) uint8 image (BGR by default, as detectron2's
    predictor and ``cv2.imread``; pass ``image_format="RGB"`` for Pillow images) and returns the
    model's output dict for it, e.g. ``{"panoptic_seg": (id_map (H, W), segments_info), ...}`` at
    the image's own size. ``preprocess`` returns the model's input dict alone. Class names and
    colours: ``self.metadata``, the metadata of ``DATASETS.TEST[0]`` (else ``DATASETS.TRAIN[0]``).
    """

    def __init__(self, cfg):
        self.cfg = cfg.clone()  # the model may change it
        if cfg.INPUT.FORMAT not in ("RGB", "BGR"):
            raise UserInputError(f"INPUT.FORMAT must be RGB or BGR for the predictor, got {cfg.INPUT.FORMAT!r}")
        self.input_format = cfg.INPUT.FORMAT
        names = tuple(cfg.DATASETS.TEST) or tuple(cfg.DATASETS.TRAIN)
        self.metadata = MetadataCatalog.get(names[0] if names else "__unused")
        self.model = build_model(self.cfg)
        self.model.eval()
        load_weights(self.model, cfg.MODEL.WEIGHTS)
        self.augmentations = T.AugmentationList(build_augmentations(cfg, is_train=False))

    def preprocess(self, image, image_format="BGR"):
        """(H, W, 3) uint8 image -> the model's input dict: ``image`` (3, h, w) uint8 tensor in
        ``INPUT.FORMAT`` at the test-time size, ``height`` = H, ``width`` = W."""
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"image_format must be RGB or BGR, got {image_format!r}")
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype} "
                             "(read_image converts any image to that)")
        if image_format != self.input_format:
            image = image[:, :, ::-1]
        height, width = image.shape[:2]
        aug_input = T.AugInput(np.ascontiguousarray(image))
        self.augmentations(aug_input)
        tensor = torch.as_tensor(np.ascontiguousarray(aug_input.image.transpose(2, 0, 1)))
        return {"image": tensor, "height": height, "width": width}

    def __call__(self, image, image_format="BGR"):
        with torch.no_grad():
            return self.model([self.preprocess(image, image_format)])[0]
