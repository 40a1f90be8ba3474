"""LPSNet meta-architecture (Hong et al., CVPR 2021).

image -> ResNet + PPM-FPN (P2-P7) -> box head on P3-P7 ([l, t, r, b, border-ness] per location)
                                   -> semantic head on P2-P5 (all classes, 1/4 scale)
      -> boxes get class and confidence from the semantic head at their location, score x
         border-ness, FCOS post-processing (threshold, top-k, NMS)
      -> parameter-free panoptic head (panoptic_head.py) -> panoptic segmentation.
"""
from typing import Dict, List

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.data import MetadataCatalog
from detectron2.layers import batched_nms
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from detectron2.structures import Boxes, ImageList, Instances
from torch import nn

from ...data.categories import PanopticCategories
from ..common.resample import resample_to_output
from ..common.semantic import padded_semantic_targets, semantic_loss
from ..common.stage_timer import timed_stage
from .heads import LPSNetBoxHead, LPSNetSemSegHead
from .loss import borderness_loss, box_loss, ltrb_to_boxes
from .panoptic_head import ParameterFreePanopticHead
from .targets import build_box_targets, compute_locations, level_ranges

__all__ = ["LPSNet"]


@META_ARCH_REGISTRY.register()
class LPSNet(nn.Module):
    @configurable
    def __init__(
        self,
        *,
        backbone,
        box_head,
        sem_seg_head,
        panoptic_head,
        categories: PanopticCategories,
        pixel_mean,
        pixel_std,
        box_in_features: List[str],
        sizes_of_interest=(64, 128, 256, 512),
        positive_samples="mask",
        quality_target="borderness",
        borderness_on_negatives=True,
        box_loss_type="giou",
        box_loss_weight=1.0,
        borderness_loss_weight=1.0,
        sem_seg_loss_weight=0.7,
        ignore_value=255,
        score_thresh=0.05,
        pre_nms_topk=1000,
        nms_thresh=0.6,
        max_detections=100,
    ):
        super().__init__()
        self.backbone = backbone
        self.box_head = box_head
        self.sem_seg_head = sem_seg_head
        self.panoptic_head = panoptic_head
        self.categories = categories
        self.box_in_features = list(box_in_features)
        shapes = backbone.output_shape()
        self.strides = [shapes[f].stride for f in self.box_in_features]
        self.ranges = level_ranges(sizes_of_interest, len(self.box_in_features))
        self.positive_samples = positive_samples
        self.quality_target = quality_target
        self.borderness_on_negatives = borderness_on_negatives
        self.box_loss_type = box_loss_type
        self.box_loss_weight = box_loss_weight
        self.borderness_loss_weight = borderness_loss_weight
        self.sem_seg_loss_weight = sem_seg_loss_weight
        self.ignore_value = ignore_value
        self.score_thresh = score_thresh
        self.pre_nms_topk = pre_nms_topk
        self.nms_thresh = nms_thresh
        self.max_detections = max_detections
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        self.register_buffer("thing_ids", torch.tensor(categories.thing_ids, dtype=torch.long), False)

    @classmethod
    def from_config(cls, cfg):
        backbone = build_backbone(cfg)
        shapes = backbone.output_shape()
        meta = MetadataCatalog.get(cfg.DATASETS.TRAIN[0] if cfg.DATASETS.TRAIN else cfg.DATASETS.TEST[0])
        categories = PanopticCategories.from_metadata(meta)
        c = cfg.MODEL.LPSNET
        return {
            "backbone": backbone,
            "box_head": LPSNetBoxHead(cfg, shapes),
            "sem_seg_head": LPSNetSemSegHead(cfg, shapes, categories.num_classes),
            "panoptic_head": ParameterFreePanopticHead(cfg, categories),
            "categories": categories,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "box_in_features": c.IN_FEATURES,
            "sizes_of_interest": c.SIZES_OF_INTEREST,
            "positive_samples": c.POSITIVE_SAMPLES,
            "quality_target": c.QUALITY_TARGET,
            "borderness_on_negatives": c.BORDERNESS_ON_NEGATIVES,
            "box_loss_type": c.BOX_LOSS_TYPE,
            "box_loss_weight": c.BOX_LOSS_WEIGHT,
            "borderness_loss_weight": c.BORDERNESS_LOSS_WEIGHT,
            "sem_seg_loss_weight": c.SEM_SEG_LOSS_WEIGHT,
            "ignore_value": c.IGNORE_VALUE,
            "score_thresh": c.SCORE_THRESH_TEST,
            "pre_nms_topk": c.PRE_NMS_TOPK_TEST,
            "nms_thresh": c.NMS_THRESH_TEST,
            "max_detections": c.DETECTIONS_PER_IMAGE,
        }

    @property
    def device(self):
        return self.pixel_mean.device

    def preprocess_image(self, batched_inputs):
        images = [(x["image"].to(self.device) - self.pixel_mean) / self.pixel_std for x in batched_inputs]
        return ImageList.from_tensors(images, self.backbone.size_divisibility)

    def predict(self, features, device):
        """Head outputs from backbone features: FCOS locations, per-level box distances
        (N, L_l, 4), border-ness logits (N, L_l), semantic logits (N, C, H/4, W/4)."""
        feats = [features[f] for f in self.box_in_features]
        ltrb, border = self.box_head(feats)
        locations = compute_locations([f.shape[-2:] for f in feats], self.strides, device)
        ltrb = [x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, 4) for x in ltrb]
        border = [x.reshape(x.shape[0], -1) for x in border]
        sem_logits = self.sem_seg_head(features)
        return locations, ltrb, border, sem_logits

    def forward(self, batched_inputs: List[Dict]):
        if not self.training:
            return self.inference(batched_inputs)
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)
        locations, ltrb, border, sem_logits = self.predict(features, images.tensor.device)
        return self.losses(batched_inputs, images, locations, ltrb, border, sem_logits)

    def losses(self, batched_inputs, images, locations, ltrb, border, sem_logits):
        padded = images.tensor.shape[-2:]
        targets = [
            build_box_targets(x["instances"].to(self.device), size, padded, locations, self.ranges,
                              self.positive_samples, self.quality_target)
            for x, size in zip(batched_inputs, images.image_sizes)
        ]
        positive, box_t, quality_t, _ = (torch.cat(t) for t in zip(*targets))
        ltrb_all = torch.cat(ltrb, dim=1).reshape(-1, 4)
        border_all = torch.cat(border, dim=1).reshape(-1)
        loss_box = box_loss(ltrb_all[positive], box_t[positive], quality_t[positive], self.box_loss_type)
        loss_border = borderness_loss(border_all, quality_t, positive, self.borderness_on_negatives)

        sem_t = padded_semantic_targets(batched_inputs, padded, self.ignore_value, self.device)
        logits = F.interpolate(sem_logits, size=padded, mode="bilinear", align_corners=False)
        loss_sem = semantic_loss(logits, sem_t, self.ignore_value)
        return {
            "loss_box": self.box_loss_weight * loss_box,
            "loss_borderness": self.borderness_loss_weight * loss_border,
            "loss_sem_seg": self.sem_seg_loss_weight * loss_sem,
        }

    # ------------------------------------------------------------------ inference
    def decode_boxes(self, locations, ltrb, border, sem_logits, image_size):
        """Boxes of one image: class and confidence from the semantic head at the location,
        score = confidence x border-ness, FCOS post-processing (candidates: confidence above
        ``score_thresh``; the top ``pre_nms_topk`` by score per level; class-wise NMS).
        Returns ``Instances``."""
        sem_stride = self.sem_seg_head.common_stride
        h4, w4 = sem_logits.shape[-2:]
        all_boxes, all_scores, all_cls, all_border = [], [], [], []
        for locs, d, b in zip(locations, ltrb, border):
            qx = torch.div(locs[:, 0].long(), sem_stride, rounding_mode="floor").clamp(max=w4 - 1)
            qy = torch.div(locs[:, 1].long(), sem_stride, rounding_mode="floor").clamp(max=h4 - 1)
            prob = sem_logits[:, qy, qx].softmax(0)[self.thing_ids]  # (N_thing, L)
            conf, cls = prob.max(0)
            bness = b.sigmoid()
            inside = (locs[:, 0] < image_size[1]) & (locs[:, 1] < image_size[0])  # not in the padding
            score = conf * bness
            # FCOS: the threshold applies to the class confidence; border-ness (centre-ness in
            # FCOS) only re-ranks the candidates (top-k, NMS) through the product.
            keep = ((conf > self.score_thresh) & inside).nonzero().squeeze(1)
            if keep.numel() > self.pre_nms_topk:
                keep = keep[score[keep].topk(self.pre_nms_topk).indices]
            all_boxes.append(ltrb_to_boxes(locs[keep], d[keep]))
            all_scores.append(score[keep])
            all_cls.append(cls[keep])
            all_border.append(bness[keep])
        boxes = Boxes(torch.cat(all_boxes))
        boxes.clip(image_size)
        scores, cls, bness = torch.cat(all_scores), torch.cat(all_cls), torch.cat(all_border)
        keep = batched_nms(boxes.tensor, scores, cls, self.nms_thresh)[: self.max_detections]
        inst = Instances(image_size)
        inst.pred_boxes = boxes[keep]
        inst.scores = scores[keep]
        inst.pred_classes = cls[keep]
        inst.borderness = bness[keep]
        return inst

    def inference(self, batched_inputs: List[Dict]):
        assert not self.training
        with timed_stage("preprocess"):
            images = self.preprocess_image(batched_inputs)
        with timed_stage("backbone"):
            features = self.backbone(images.tensor)
        with timed_stage("heads"):
            locations, ltrb, border, sem_logits = self.predict(features, images.tensor.device)
            detections = [
                self.decode_boxes(locations, [d[i] for d in ltrb], [b[i] for b in border], sem_logits[i], size)
                for i, size in enumerate(images.image_sizes)
            ]
        with timed_stage("postprocess"):
            return [
                self.postprocess(det, logits, size, x.get("height", size[0]), x.get("width", size[1]))
                for det, logits, size, x in zip(detections, sem_logits, images.image_sizes, batched_inputs)
            ]

    def postprocess(self, det, sem_logits, image_size, height, width):
        """Detections + semantic logits of one image -> detectron2's outputs at (height, width)."""
        scale_y, scale_x = height / image_size[0], width / image_size[1]
        sem = resample_to_output(sem_logits, self.sem_seg_head.common_stride, image_size, (height, width))
        inst = Instances((height, width))
        boxes = det.pred_boxes.tensor.clone()
        boxes[:, 0::2] *= scale_x
        boxes[:, 1::2] *= scale_y
        inst.pred_boxes = Boxes(boxes)
        inst.scores = det.scores
        inst.pred_classes = det.pred_classes
        inst.borderness = det.borderness
        seg, info = self.panoptic_head(
            sem.argmax(0), boxes, det.scores, self.thing_ids[det.pred_classes], det.borderness
        )
        return {"panoptic_seg": (seg, info), "sem_seg": sem, "instances": inst}
