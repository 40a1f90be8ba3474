"""FPSNet (de Geus, Meletis, Dubbelman: "Fast Panoptic Segmentation Network", RA-L 2020).

RetinaNet on ResNet-FPN (P3-P7) gives boxes; a single stride-8 feature map S = S3 + S4 + S5 is
built from P3-P5; the top N_att detections become attention masks (Gaussian inside the box,
scaled by C_att; shuffled over the slots in training) that are concatenated to S; the panoptic
head classifies every pixel into one of the N_att masks or one of the N_stuff stuff classes.
A thing segment's class and score are its detection's. No instance masks, no merging.

Training: detections come from the detector's own (detached) predictions; they are matched to
the ground-truth things one-to-one by box IoU > 0.5; the per-pixel target is the matched slot,
the stuff class, "thing not matched" or "unlabeled" (``targets.py``); the loss is
lambda_det (focal + box regression) + lambda_pan (softmax cross-entropy).
"""
from typing import Dict, List

import torch
from detectron2.config import configurable
from detectron2.data import MetadataCatalog
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone, detector_postprocess
from detectron2.structures import Boxes, ImageList, Instances
from torch import nn
from torch.nn import functional as F

from ...data.categories import PanopticCategories
from ..common.retinanet import RetinaNetBranch
from ..common.stage_timer import timed_stage
from .attention import draw_attention_masks
from .heads import PanopticHead, SingleFeatureMap
from .inference import panoptic_from_logits
from .targets import IGNORE, match_detections_to_gt, panoptic_targets

__all__ = ["FPSNet"]


@META_ARCH_REGISTRY.register()
class FPSNet(nn.Module):
    @configurable
    def __init__(
        self,
        *,
        backbone: nn.Module,
        detector: RetinaNetBranch,
        feature_map: SingleFeatureMap,
        panoptic_head: PanopticHead,
        in_features: List[str],
        categories: PanopticCategories,
        num_masks: int = 50,
        attention_scale: float = 50.0,
        hard_masks: bool = False,
        gaussian_spread: str = "variance",
        shuffle_masks: bool = True,
        match_iou_thresh: float = 0.5,
        match_same_class: bool = False,
        gt_boxes_as_masks: bool = False,
        train_gt_boxes_prob: float = 0.0,
        det_loss_weight: float = 0.5,
        pan_loss_weight: float = 1.0,
        stuff_area_limit: int = 0,
        pixel_mean,
        pixel_std,
    ):
        """
        Args:
            backbone: a ResNet-FPN with (at least) the detector's levels and ``in_features``.
            detector: ``RetinaNetBranch`` on the FPN levels (P3-P7).
            feature_map: builds S from ``in_features`` (P3, P4, P5).
            panoptic_head: ``PanopticHead`` with N_att + N_stuff + 2 outputs.
            categories: thing/stuff contiguous ids of the dataset.
            num_masks: N_att. attention_scale: C_att. hard_masks, gaussian_spread, shuffle_masks,
            match_iou_thresh, match_same_class, gt_boxes_as_masks, train_gt_boxes_prob: see
            ``config.py``.
            det_loss_weight, pan_loss_weight: lambda_det, lambda_pan.
            stuff_area_limit: optional removal of small stuff segments at inference (0 = off).
        """
        super().__init__()
        self.backbone = backbone
        self.detector = detector
        self.feature_map = feature_map
        self.panoptic_head = panoptic_head
        self.in_features = list(in_features)
        self.categories = categories
        self.num_masks = num_masks
        self.attention_scale = attention_scale
        self.hard_masks = hard_masks
        self.gaussian_spread = gaussian_spread
        self.shuffle_masks = shuffle_masks
        self.match_iou_thresh = match_iou_thresh
        self.match_same_class = match_same_class
        self.gt_boxes_as_masks = gt_boxes_as_masks
        self.train_gt_boxes_prob = train_gt_boxes_prob
        self.det_loss_weight = det_loss_weight
        self.pan_loss_weight = pan_loss_weight
        self.stuff_area_limit = stuff_area_limit
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        self.register_buffer("stuff_index", categories.contiguous_to_stuff_index(), False)
        self.stride = backbone.output_shape()[self.in_features[0]].stride
        if detector.num_classes != categories.num_things:
            raise ValueError(
                f"MODEL.RETINANET.NUM_CLASSES ({detector.num_classes}) must be the dataset's number "
                f"of thing classes ({categories.num_things})"
            )

    @classmethod
    def from_config(cls, cfg):
        names = cfg.DATASETS.TRAIN or cfg.DATASETS.TEST
        categories = PanopticCategories.from_metadata(MetadataCatalog.get(names[0]))
        backbone = build_backbone(cfg)
        shapes = backbone.output_shape()
        fcfg = cfg.MODEL.FPSNET
        feature_map = SingleFeatureMap([shapes[f] for f in fcfg.IN_FEATURES], fcfg.FEATURE_DIM)
        head = PanopticHead(
            fcfg.FEATURE_DIM,
            fcfg.NUM_ATTENTION_MASKS,
            categories.num_stuff,
            conv_dim=fcfg.HEAD_DIM,
            num_convs=fcfg.NUM_HEAD_CONVS,
            norm=fcfg.NORM,
            mask_skip=fcfg.MASK_LOGIT_SKIP,
            attention_scale=fcfg.ATTENTION_SCALE,
        )
        return {
            "backbone": backbone,
            "detector": RetinaNetBranch(cfg, shapes),
            "feature_map": feature_map,
            "panoptic_head": head,
            "in_features": fcfg.IN_FEATURES,
            "categories": categories,
            "num_masks": fcfg.NUM_ATTENTION_MASKS,
            "attention_scale": fcfg.ATTENTION_SCALE,
            "hard_masks": fcfg.HARD_MASKS,
            "gaussian_spread": fcfg.GAUSSIAN_SPREAD,
            "shuffle_masks": fcfg.SHUFFLE_MASKS,
            "match_iou_thresh": fcfg.MATCH_IOU_THRESH,
            "match_same_class": fcfg.MATCH_SAME_CLASS,
            "gt_boxes_as_masks": fcfg.GT_BOXES_AS_MASKS,
            "train_gt_boxes_prob": fcfg.TRAIN_GT_BOXES_PROB,
            "det_loss_weight": fcfg.DET_LOSS_WEIGHT,
            "pan_loss_weight": fcfg.PAN_LOSS_WEIGHT,
            "stuff_area_limit": fcfg.STUFF_AREA_LIMIT,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
        }

    @property
    def device(self):
        return self.pixel_mean.device

    # ------------------------------------------------------------------ forward
    def forward(self, batched_inputs: List[Dict]):
        with timed_stage("preprocess"):
            images = [x["image"].to(self.device) for x in batched_inputs]
            images = [(x - self.pixel_mean) / self.pixel_std for x in images]
            images = ImageList.from_tensors(images, self.backbone.size_divisibility)
            gt_instances = None
            if "instances" in batched_inputs[0] and (self.training or self.gt_boxes_as_masks):
                gt_instances = [x["instances"].to(self.device) for x in batched_inputs]
        with timed_stage("backbone"):
            features = self.backbone(images.tensor)
        with timed_stage("heads"):
            det_losses, detections = self.detector(
                images, features, gt_instances if self.training else None, return_detections=True
            )
            if self.gt_boxes_as_masks and gt_instances is not None:
                detections = [gt_as_detections(g) for g in gt_instances]
            elif self.training and self.train_gt_boxes_prob > 0:
                use_gt = torch.rand(len(detections)) < self.train_gt_boxes_prob
                detections = [
                    gt_as_detections(g) if u else d for g, d, u in zip(gt_instances, detections, use_gt.tolist())
                ]
            fmap = self.feature_map([features[f] for f in self.in_features])
            slots = self.assign_slots(detections, shuffle=self.training and self.shuffle_masks)
            masks = draw_attention_masks(
                slots["boxes"],
                slots["valid"],
                fmap.shape[-2:],
                self.stride,
                scale=self.attention_scale,
                hard=self.hard_masks,
                spread=self.gaussian_spread,
            )
            logits = self.panoptic_head(fmap, masks)

        if self.training:
            targets = self.build_targets(batched_inputs, gt_instances, detections, slots, images)
            loss_pan = self.panoptic_loss(logits, targets)
            losses = {k: v * self.det_loss_weight for k, v in det_losses.items()}
            losses["loss_panoptic"] = loss_pan * self.pan_loss_weight
            return losses

        with timed_stage("postprocess"):
            return self.postprocess(batched_inputs, images, logits, detections, slots)

    # ------------------------------------------------------------------ attention slots
    def assign_slots(self, detections: List[Instances], shuffle: bool):
        """Put the top-N_att detections of each image into the N_att mask slots.

        Returns a dict of (B, N_att, ...) tensors: "boxes", "valid", and "det_of_slot" (index of
        the detection in a slot, -1 if empty), plus "slot_of_det" per image ((n,) long).
        Without shuffling (always in inference) detection i sits in slot i (score order)."""
        B, N = len(detections), self.num_masks
        boxes = torch.zeros((B, N, 4), device=self.device)
        valid = torch.zeros((B, N), dtype=torch.bool, device=self.device)
        det_of_slot = torch.full((B, N), -1, dtype=torch.long, device=self.device)
        slot_of_det = []
        for i, det in enumerate(detections):
            n = min(len(det), N)  # detections are sorted by score: the first n are the top n
            slots = torch.randperm(N, device=self.device)[:n] if shuffle else torch.arange(n, device=self.device)
            boxes[i, slots] = det.pred_boxes.tensor[:n].to(boxes.dtype)
            valid[i, slots] = True
            det_of_slot[i, slots] = torch.arange(n, device=self.device)
            slot_of_det.append(slots)
        return {"boxes": boxes, "valid": valid, "det_of_slot": det_of_slot, "slot_of_det": slot_of_det}

    # ------------------------------------------------------------------ training
    @torch.no_grad()
    def build_targets(self, batched_inputs, gt_instances, detections, slots, images):
        """(B, Hp, Wp) per-pixel targets over the padded batch (IGNORE on the padding)."""
        Hp, Wp = images.tensor.shape[-2:]
        targets = torch.full((len(batched_inputs), Hp, Wp), IGNORE, dtype=torch.long, device=self.device)
        for i, (x, gt, det) in enumerate(zip(batched_inputs, gt_instances, detections)):
            n = slots["slot_of_det"][i].numel()
            det_to_gt = match_detections_to_gt(
                det.pred_boxes.tensor[:n],
                gt.gt_boxes.tensor,
                self.match_iou_thresh,
                det.pred_classes[:n] if self.match_same_class else None,
                gt.gt_classes if self.match_same_class else None,
            )
            gt_slot = torch.full((len(gt),), -1, dtype=torch.long, device=self.device)
            matched = det_to_gt >= 0
            gt_slot[det_to_gt[matched]] = slots["slot_of_det"][i][matched]
            sem_seg = x["sem_seg"].to(self.device)
            masks = gt.gt_masks.tensor if len(gt) else torch.zeros((0,) + sem_seg.shape, dtype=torch.bool)
            t = panoptic_targets(
                sem_seg, masks, gt_slot, self.stuff_index, self.num_masks, self.categories.ignore_label
            )
            targets[i, : t.shape[0], : t.shape[1]] = t
        return targets

    def panoptic_loss(self, logits, targets):
        """Softmax cross-entropy of the logits upsampled (bilinear) to the input size."""
        up = F.interpolate(logits, size=targets.shape[-2:], mode="bilinear", align_corners=False)
        return F.cross_entropy(up, targets, ignore_index=IGNORE)

    # ------------------------------------------------------------------ inference
    def postprocess(self, batched_inputs, images, logits, detections, slots):
        results = []
        padded = images.tensor.shape[-2:]
        cats = self.categories
        for i, (x, size, det) in enumerate(zip(batched_inputs, images.image_sizes, detections)):
            height, width = x.get("height", size[0]), x.get("width", size[1])
            n = min(len(det), self.num_masks)
            pan = panoptic_from_logits(
                logits[i],
                n,
                det.pred_classes,
                det.scores,
                self.num_masks,
                cats.thing_ids,
                cats.stuff_ids,
                padded,
                size,
                (height, width),
                self.stuff_area_limit,
            )
            results.append(
                {"panoptic_seg": pan, "instances": detector_postprocess(det[:n], height, width)}
            )
        return results


def gt_as_detections(gt: Instances) -> Instances:
    """Ground-truth things as detections of score 1 (the "GT boxes as attention masks" ablation)."""
    return Instances(
        gt.image_size,
        pred_boxes=Boxes(gt.gt_boxes.tensor.clone()),
        scores=torch.ones(len(gt), device=gt.gt_boxes.device),
        pred_classes=gt.gt_classes.clone(),
    )
