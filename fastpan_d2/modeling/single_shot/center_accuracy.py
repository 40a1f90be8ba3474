"""How often the closest-centre policy picks the right box for same-class overlap pixels.

The paper (Sec. IV-A) evaluates the instance-centre branch on COCO val by "tracking correct id
assignments for overlaps with ground-truth bounding boxes": for 90.8 % of the pixels belonging to
multiple boxes of the same class the branch assigns the right GT box. This module measures the
same on any registered panoptic dataset::

    python -m fastpan_d2.modeling.single_shot.center_accuracy \\
        --config-file configs/Synthetic-PanopticSegmentation/single_shot.yaml MODEL.WEIGHTS model.pth
"""
import argparse
from typing import Tuple

import torch

from ..common.resample import resample_to_output
from .panoptic_head import box_masks, closest_center_assignment
from .targets import pixel_centers


def same_class_overlap_accuracy(
    masks: torch.Tensor, boxes: torch.Tensor, classes: torch.Tensor, centers: torch.Tensor
) -> Tuple[int, int]:
    """(correct, total) over the contested pixels of one image.

    A pixel is contested when it belongs to a GT instance and lies inside two or more GT boxes of
    that instance's class; it is right when, among those boxes, the one whose centre is nearest to
    the pixel's predicted centre is its own instance's box.

    Args:
        masks: (N, H, W) bool GT instance masks; boxes: (N, 4) their boxes; classes: (N,).
        centers: (2, H, W) predicted instance centre (x, y) per pixel (pixel centre + offset).
    """
    N, H, W = masks.shape
    if N < 2:
        return 0, 0
    owner = masks.to(torch.uint8).argmax(dim=0)  # (H, W)
    candidates = box_masks(boxes.float(), H, W) & (classes[:, None, None] == classes[owner][None])
    contested = masks.any(dim=0) & (candidates.sum(dim=0) >= 2)
    choice = closest_center_assignment(candidates, boxes.float(), centers)
    return int((contested & (choice == owner)).sum()), int(contested.sum())


@torch.no_grad()
def evaluate_center_accuracy(model, data_loader) -> Tuple[int, int]:
    """Sum of ``same_class_overlap_accuracy`` over a loader of PanopticDatasetMapper outputs
    (``instances`` in the network's input size)."""
    model.eval()
    correct = total = 0
    for batch in data_loader:
        images = model.preprocess_image(batch)
        offsets = model.center_head.layers(model.backbone(images.tensor))
        stride = model.sem_head.common_stride
        for x, off, size in zip(batch, offsets, images.image_sizes):
            off = resample_to_output(off, stride, size, size)
            inst = x["instances"].to(off.device)
            c, t = same_class_overlap_accuracy(
                inst.gt_masks.tensor, inst.gt_boxes.tensor, inst.gt_classes,
                pixel_centers(*size, device=off.device) + off,
            )
            correct, total = correct + c, total + t
    return correct, total


def main(argv=None):
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.data import build_detection_test_loader
    from detectron2.modeling import build_model

    from fastpan_d2.data.datasets.synthetic import configure_synthetic_from_cfg
    from fastpan_d2.data.panoptic_mapper import PanopticDatasetMapper
    from fastpan_d2.engine import setup_cfg

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--dataset", default=None, help="default: cfg.DATASETS.TEST[0]")
    parser.add_argument("opts", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    cfg = setup_cfg(args.config_file, args.opts)
    configure_synthetic_from_cfg(cfg)
    model = build_model(cfg)
    DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    if model.center_head is None:
        raise SystemExit("The model has no centre branch (MODEL.SINGLE_SHOT.CENTER_BRANCH.ENABLED False)")
    dataset = args.dataset or cfg.DATASETS.TEST[0]
    # The GT instances come through the training mapper without its random augmentations.
    mapper = PanopticDatasetMapper(cfg, is_train=False)
    loader = build_detection_test_loader(cfg, dataset, mapper=mapper)
    correct, total = evaluate_center_accuracy(model, loader)
    pct = 100.0 * correct / max(total, 1)
    print(f"closest-centre on GT boxes, {dataset}: {correct}/{total} contested pixels right = {pct:.1f} %")
    return correct, total


if __name__ == "__main__":
    main()
