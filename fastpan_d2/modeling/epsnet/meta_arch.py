"""EPSNet (Chang et al., "EPSNet: Efficient Panoptic Segmentation Network with Cross-layer
Attention Fusion", ACCV 2020) as a detectron2 META_ARCH.

    image ─ ResNet-FPN ─┬─ F3,F4,F5 ─ fusion (CLA | PanopticFPN) ─ Z ─ protohead ─ P (k, H/4, W/4)
                        ├─ instance levels ─ instance head ─ boxes, N_thing logits, k coefs (tanh)
                        └─ F7 ─ semantic head ─ Y (k x N_stuff+1)      [standard: 1x1 conv on Z]
    things: sigmoid(P·c) cropped by the box;  stuff: softmax(P·Y);  heuristic panoptic merge.
"""
from typing import Dict, List

import torch
from detectron2.config import configurable
from detectron2.data import MetadataCatalog
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone
from detectron2.modeling.anchor_generator import build_anchor_generator
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.matcher import Matcher
from detectron2.structures import Boxes, ImageList, Instances
from torch import nn

from fastpan_d2.data.categories import PanopticCategories
from fastpan_d2.modeling.common.resample import resample_to_output
from fastpan_d2.modeling.common.stage_timer import timed_stage

from .fusion import build_fusion
from .heads import CoefficientSemanticHead, InstanceHead, ProtoHead, StandardSemanticHead
from .loss import epsnet_losses, match_anchors, semantic_targets, stuff_lookup
from .postprocess import fast_nms, panoptic_merge, paste_masks, standard_nms

__all__ = ["EPSNet"]


@META_ARCH_REGISTRY.register()
class EPSNet(nn.Module):
    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        fusion: nn.Module,
        proto_head: nn.Module,
        instance_head: nn.Module,
        semantic_head: nn.Module,
        anchor_generator,
        categories: PanopticCategories,
        pixel_mean,
        pixel_std,
        instance_in_features: List[str] = ("p3", "p4", "p5"),
        sem_in_feature: str = "p7",
        sem_head_type: str = "coefficients",
        size_divisibility: int = 32,
        matcher: Matcher = None,
        box2box_transform: Box2BoxTransform = None,
        loss_weights: Dict[str, float] = None,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        smooth_l1_beta: float = 1.0,
        masks_to_train: int = 100,
        ignore_value: int = 255,
        nms_type: str = "fast",
        nms_thresh: float = 0.5,
        score_thresh: float = 0.05,
        nms_top_k: int = 200,
        detections_per_image: int = 100,
        instance_score_thresh: float = 0.3,
        overlap_thresh: float = 0.5,
        stuff_area_thresh: int = 4096,
    ):
        super().__init__()
        self.backbone = backbone
        self.fusion = fusion
        self.proto_head = proto_head
        self.instance_head = instance_head
        self.semantic_head = semantic_head
        self.anchor_generator = anchor_generator
        self.categories = categories
        self.instance_in_features = list(instance_in_features)
        self.sem_in_feature = sem_in_feature
        if sem_head_type not in ("coefficients", "standard"):
            raise ValueError(f"SEM_HEAD must be 'coefficients' or 'standard', got {sem_head_type!r}")
        self.sem_head_type = sem_head_type
        self.size_divisibility = size_divisibility
        self.matcher = matcher or Matcher([0.4, 0.5], [0, -1, 1], allow_low_quality_matches=True)
        self.box2box_transform = box2box_transform or Box2BoxTransform(weights=(10.0, 10.0, 5.0, 5.0))
        self.loss_weights = loss_weights or {"loss_cls": 1.0, "loss_box": 1.5, "loss_mask": 6.125, "loss_sem": 2.0}
        self.focal_alpha, self.focal_gamma = focal_alpha, focal_gamma
        self.smooth_l1_beta = smooth_l1_beta
        self.masks_to_train = masks_to_train
        self.ignore_value = ignore_value
        if nms_type not in ("fast", "standard"):
            raise ValueError(f"NMS_TYPE must be 'fast' or 'standard', got {nms_type!r}")
        self.nms_type = nms_type
        self.nms_thresh, self.score_thresh, self.nms_top_k = nms_thresh, score_thresh, nms_top_k
        self.detections_per_image = detections_per_image
        self.instance_score_thresh = instance_score_thresh
        self.overlap_thresh = overlap_thresh
        self.stuff_area_thresh = stuff_area_thresh
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        self.register_buffer("stuff_lut", stuff_lookup(categories), False)

    @classmethod
    def from_config(cls, cfg):
        e = cfg.MODEL.EPSNET
        names = list(cfg.DATASETS.TRAIN) or list(cfg.DATASETS.TEST)
        categories = PanopticCategories.from_metadata(MetadataCatalog.get(names[0]))
        backbone = build_backbone(cfg)
        shapes = backbone.output_shape()
        ch = shapes[e.FUSION_IN_FEATURES[0]].channels
        k = e.NUM_PROTOTYPES
        anchor_generator = build_anchor_generator(cfg, [shapes[f] for f in e.INSTANCE_IN_FEATURES])
        num_anchors = anchor_generator.num_anchors
        assert len(set(num_anchors)) == 1, "every instance level needs the same number of anchors"
        if e.SEM_HEAD == "coefficients":
            semantic_head = CoefficientSemanticHead(
                shapes[e.SEM_IN_FEATURE].channels, e.HEAD_CHANNELS, k, categories.num_stuff + 1, e.NORM,
                e.SEM_POOLING,
            )
        else:
            semantic_head = StandardSemanticHead(ch, categories.num_stuff + 1)
        balance = e.LOSS_BALANCE
        return {
            "backbone": backbone,
            "fusion": build_fusion(cfg, ch),
            "proto_head": ProtoHead(ch, e.HEAD_CHANNELS, k, e.PROTO_NUM_CONVS, e.NORM, e.PROTO_ACTIVATION),
            "instance_head": InstanceHead(
                shapes[e.INSTANCE_IN_FEATURES[0]].channels, e.HEAD_CHANNELS, num_anchors[0],
                categories.num_things, k, e.NORM, e.PRIOR_PROB,
            ),
            "semantic_head": semantic_head,
            "anchor_generator": anchor_generator,
            "categories": categories,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "instance_in_features": e.INSTANCE_IN_FEATURES,
            "sem_in_feature": e.SEM_IN_FEATURE,
            "sem_head_type": e.SEM_HEAD,
            "size_divisibility": e.SIZE_DIVISIBILITY,
            "matcher": Matcher(e.IOU_THRESHOLDS, e.IOU_LABELS, allow_low_quality_matches=True),
            "box2box_transform": Box2BoxTransform(weights=e.BBOX_REG_WEIGHTS),
            "loss_weights": {
                "loss_cls": e.LOSS_WEIGHT_CLS if balance else 1.0,
                "loss_box": e.LOSS_WEIGHT_BOX if balance else 1.0,
                "loss_mask": e.LOSS_WEIGHT_MASK if balance else 1.0,
                "loss_sem": e.LOSS_WEIGHT_SEM if balance else 1.0,
            },
            "focal_alpha": e.FOCAL_LOSS_ALPHA,
            "focal_gamma": e.FOCAL_LOSS_GAMMA,
            "smooth_l1_beta": e.SMOOTH_L1_BETA,
            "masks_to_train": e.MASKS_TO_TRAIN,
            "ignore_value": e.IGNORE_VALUE,
            "nms_type": e.NMS_TYPE,
            "nms_thresh": e.NMS_THRESH,
            "score_thresh": e.SCORE_THRESH,
            "nms_top_k": e.NMS_TOP_K,
            "detections_per_image": e.DETECTIONS_PER_IMAGE,
            "instance_score_thresh": e.INSTANCE_SCORE_THRESH,
            "overlap_thresh": e.OVERLAP_THRESH,
            "stuff_area_thresh": e.STUFF_AREA_THRESH,
        }

    @property
    def device(self):
        return self.pixel_mean.device

    def preprocess_image(self, batched_inputs):
        images = [(x["image"].to(self.device) - self.pixel_mean) / self.pixel_std for x in batched_inputs]
        return ImageList.from_tensors(images, self.size_divisibility)

    def predict(self, images: ImageList):
        """Raw outputs: dict with protos (N, k, H/4, W/4), sem_logits (N, S+1, h, w), sem_stride,
        cls (N, A, C), deltas (N, A, 4), coefs (N, A, k), anchors (Boxes)."""
        with timed_stage("backbone"):
            features = self.backbone(images.tensor)
        with timed_stage("heads"):
            z = self.fusion(features)
            protos = self.proto_head(z)
            level_feats = [features[f] for f in self.instance_in_features]
            cls, deltas, coefs = self.instance_head(level_feats)
            anchors = Boxes.cat(self.anchor_generator(level_feats))
            if self.sem_head_type == "coefficients":
                y = self.semantic_head(features[self.sem_in_feature])
                sem_logits = CoefficientSemanticHead.logits(protos, y)
            else:
                sem_logits = self.semantic_head(z)
        pad_h = images.tensor.shape[-2]
        return {
            "protos": protos, "sem_logits": sem_logits, "sem_stride": pad_h / sem_logits.shape[-2],
            "cls": cls, "deltas": deltas, "coefs": coefs, "anchors": anchors,
        }

    def forward(self, batched_inputs):
        with timed_stage("preprocess"):
            images = self.preprocess_image(batched_inputs)
        out = self.predict(images)
        if self.training:
            return self.losses(batched_inputs, images, out)
        return self.inference(batched_inputs, images, out)

    def losses(self, batched_inputs, images, out):
        gt_instances = [x["instances"].to(self.device) for x in batched_inputs]
        sem = [semantic_targets(x["sem_seg"].to(self.device), self.stuff_lut, self.ignore_value)
               for x in batched_inputs]
        sem_targets = ImageList.from_tensors(sem, self.size_divisibility, pad_value=self.ignore_value).tensor
        anchors = out["anchors"]
        matched_idxs, labels = match_anchors(anchors, gt_instances, self.matcher)
        losses = epsnet_losses(
            anchors=anchors.tensor, matched_idxs=matched_idxs, anchor_labels=labels, pred_cls=out["cls"],
            pred_deltas=out["deltas"], pred_coefs=out["coefs"], protos=out["protos"],
            sem_logits=out["sem_logits"], gt_instances=gt_instances, sem_targets=sem_targets,
            box2box=self.box2box_transform, num_classes=self.categories.num_things,
            padded_size=tuple(images.tensor.shape[-2:]), focal_alpha=self.focal_alpha,
            focal_gamma=self.focal_gamma, smooth_l1_beta=self.smooth_l1_beta,
            masks_to_train=self.masks_to_train, ignore_value=self.ignore_value,
        )
        return {k: v * self.loss_weights[k] for k, v in losses.items()}

    @torch.no_grad()
    def inference(self, batched_inputs, images, out):
        results = []
        pad_h = images.tensor.shape[-2]
        proto_stride = pad_h / out["protos"].shape[-2]
        for i, x in enumerate(batched_inputs):
            image_size = images.image_sizes[i]
            out_size = (x.get("height", image_size[0]), x.get("width", image_size[1]))
            with timed_stage("heads"):
                boxes = self.box2box_transform.apply_deltas(out["deltas"][i], out["anchors"].tensor)
                boxes = Boxes(boxes)
                boxes.clip(image_size)
                scores = out["cls"][i].sigmoid()
            with timed_stage("postprocess"):
                results.append(
                    self.postprocess(boxes.tensor, scores, out["coefs"][i], out["protos"][i],
                                     out["sem_logits"][i], out["sem_stride"], proto_stride, image_size, out_size)
                )
        return results

    def postprocess(self, boxes, scores, coefs, protos, sem_logits, sem_stride, proto_stride, image_size, out_size):
        nms = fast_nms if self.nms_type == "fast" else standard_nms
        top_k = self.nms_top_k if self.nms_type == "fast" else 5 * self.nms_top_k
        keep, det_scores, det_classes = nms(
            boxes, scores, self.nms_thresh, top_k, self.score_thresh, self.detections_per_image
        )
        sel = det_scores >= self.instance_score_thresh
        keep, det_scores, det_classes = keep[sel], det_scores[sel], det_classes[sel]
        scale = boxes.new_tensor([out_size[1] / image_size[1], out_size[0] / image_size[0]] * 2)
        det_boxes = boxes[keep] * scale
        mask_logits = torch.einsum("nk,khw->nhw", coefs[keep], protos)
        masks = paste_masks(mask_logits, det_boxes, proto_stride, image_size, out_size)

        sem = resample_to_output(sem_logits, sem_stride, image_size, out_size)
        stuff_classes = sem.max(0).indices  # max() is faster than argmax() over dim 0 on CPU
        seg, info = panoptic_merge(
            masks, det_scores, det_classes, stuff_classes, num_stuff=self.categories.num_stuff,
            thing_ids=self.categories.thing_ids, stuff_ids=self.categories.stuff_ids,
            overlap_thresh=self.overlap_thresh, stuff_area_thresh=self.stuff_area_thresh,
        )
        inst = Instances(out_size)
        inst.pred_boxes = Boxes(det_boxes)
        inst.scores = det_scores
        inst.pred_classes = det_classes
        inst.pred_masks = masks
        return {"panoptic_seg": (seg, info), "sem_seg": sem, "instances": inst}
