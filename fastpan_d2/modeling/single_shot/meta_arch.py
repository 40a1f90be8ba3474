"""Single-Shot Panoptic Segmentation (Weber, Luiten, Leibe): META_ARCH ``SingleShotPanoptic``.

::

    image -> ResNet + FPN (P2..P7, 256 ch)
               |-- P2..P5 -> semantic branch (conv+GN+ReLU, 2x up, ..., sum, 1x1) -> X, all classes, 1/4
               |-- P2..P7 -> RetinaNet (4 convs cls / 4 convs box per level) -> detections (c_i, b_i, s_i)
               `-- P2..P5 -> centre branch (same as semantic, 2 ch) -> (dx, dy) to the box centre, 1/4
    panoptic head (no parameters): X, centres upsampled to the output size; keep s_i >= 0.4;
      Y = [X_stuff ; X_things[c_i] cropped to b_i] -> argmax; same-class overlaps by policy
      (closest-centre / highest-confidence / smallest-first); optional unknown + small-stuff removal.

Training loss: λo (L_focal + L_reg) + λs L_CE + λi L_1(centre).
"""
from typing import Dict, List, Optional

import torch
from detectron2.config import configurable
from detectron2.data import MetadataCatalog
from detectron2.layers import ShapeSpec
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from detectron2.modeling.meta_arch.semantic_seg import SemSegFPNHead
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import ImageList
from torch import nn
from torch.nn import functional as F

from ...data.categories import PanopticCategories
from ..backbone import resnet_fpn_p2_p7  # noqa: F401  (registers build_resnet_fpn_p2_p7_backbone)
from ..common.retinanet import RetinaNetBranch
from ..common.resample import resample_to_output
from ..common.semantic import padded_semantic_targets, semantic_loss
from ..common.stage_timer import timed_stage
from .panoptic_head import SingleShotPanopticHead
from .targets import batch_center_targets, center_loss, pixel_centers

__all__ = ["SingleShotPanoptic"]


def build_fpn_branch(cfg, input_shape: Dict[str, ShapeSpec], num_outputs: int) -> SemSegFPNHead:
    """The semantic branch of Fig. 3 (Panoptic-FPN's head, GroupNorm); the centre branch is the same."""
    s = cfg.MODEL.SINGLE_SHOT.SEMANTIC
    return SemSegFPNHead(
        {k: v for k, v in input_shape.items() if k in s.IN_FEATURES},
        num_classes=num_outputs,
        conv_dims=s.CONVS_DIM,
        common_stride=s.COMMON_STRIDE,
        norm=s.NORM,
        ignore_value=s.IGNORE_VALUE,
    )


@META_ARCH_REGISTRY.register()
class SingleShotPanoptic(nn.Module):
    @configurable
    def __init__(
        self,
        *,
        backbone: nn.Module,
        sem_head: SemSegFPNHead,
        detector: RetinaNetBranch,
        center_head: Optional[SemSegFPNHead],
        panoptic_head: SingleShotPanopticHead,
        pixel_mean,
        pixel_std,
        lambda_o: float = 0.5,
        lambda_s: float = 0.5,
        lambda_i: float = 0.01,
        ignore_value: int = 255,
    ):
        super().__init__()
        self.backbone = backbone
        self.sem_head = sem_head
        self.detector = detector
        self.center_head = center_head
        self.panoptic_head = panoptic_head
        if panoptic_head.needs_centers and center_head is None:
            raise ValueError(
                "OVERLAP_POLICY 'closest_center' needs MODEL.SINGLE_SHOT.CENTER_BRANCH.ENABLED=True"
            )
        self.lambda_o, self.lambda_s, self.lambda_i = lambda_o, lambda_s, lambda_i
        self.ignore_value = ignore_value
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)

    @classmethod
    def from_config(cls, cfg):
        backbone = build_backbone(cfg)
        shapes = backbone.output_shape()
        dataset = (cfg.DATASETS.TRAIN or cfg.DATASETS.TEST)[0]
        categories = PanopticCategories.from_metadata(MetadataCatalog.get(dataset))
        det_cfg = cfg.clone()
        det_cfg.defrost()
        det_cfg.MODEL.RETINANET.NUM_CLASSES = categories.num_things  # thing classes of the dataset
        ss = cfg.MODEL.SINGLE_SHOT
        return {
            "backbone": backbone,
            "sem_head": build_fpn_branch(cfg, shapes, categories.num_classes),
            "detector": RetinaNetBranch(det_cfg, shapes),
            "center_head": build_fpn_branch(cfg, shapes, 2) if ss.CENTER_BRANCH.ENABLED else None,
            "panoptic_head": SingleShotPanopticHead(cfg, categories),
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "lambda_o": ss.LAMBDA_O,
            "lambda_s": ss.LAMBDA_S,
            "lambda_i": ss.LAMBDA_I,
            "ignore_value": ss.SEMANTIC.IGNORE_VALUE,
        }

    @property
    def device(self):
        return self.pixel_mean.device

    def preprocess_image(self, batched_inputs: List[dict]) -> ImageList:
        images = [(x["image"].to(self.device) - self.pixel_mean) / self.pixel_std for x in batched_inputs]
        return ImageList.from_tensors(images, self.backbone.size_divisibility)

    def forward(self, batched_inputs: List[dict]):
        if not self.training:
            return self.inference(batched_inputs)
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)
        padded = images.tensor.shape[-2:]
        gt_instances = [x["instances"].to(self.device) for x in batched_inputs]

        det_losses, _ = self.detector(images, features, gt_instances)
        losses = {k: v * self.lambda_o for k, v in det_losses.items()}

        stride = self.sem_head.common_stride
        logits = F.interpolate(self.sem_head.layers(features), size=padded, mode="bilinear", align_corners=False)
        target = padded_semantic_targets(batched_inputs, padded, self.ignore_value, self.device)
        losses["loss_sem_seg"] = self.lambda_s * semantic_loss(logits, target, self.ignore_value)

        if self.center_head is not None:
            offsets = self.center_head.layers(features)
            offsets = F.interpolate(offsets, scale_factor=stride, mode="bilinear", align_corners=False)
            off_t, valid = batch_center_targets(gt_instances, padded)
            losses["loss_center"] = self.lambda_i * center_loss(offsets, off_t, valid)
        return losses

    @torch.no_grad()
    def inference(self, batched_inputs: List[dict]):
        with timed_stage("preprocess"):
            images = self.preprocess_image(batched_inputs)
        with timed_stage("backbone"):
            features = self.backbone(images.tensor)
        with timed_stage("heads"):
            det_features = [features[f] for f in self.detector.in_features]
            det_logits, det_deltas = self.detector.predict(det_features)
            anchors = self.detector.anchor_generator(det_features)
            sem = self.sem_head.layers(features)
            offsets = self.center_head.layers(features) if self.panoptic_head.needs_centers else None
        with timed_stage("postprocess"):
            detections = self.detector.decode(anchors, det_logits, det_deltas, images.image_sizes)
            stride = self.sem_head.common_stride
            results = []
            for i, (x, size) in enumerate(zip(batched_inputs, images.image_sizes)):
                out_size = (x.get("height", size[0]), x.get("width", size[1]))
                logits = resample_to_output(sem[i], stride, size, out_size)
                det = detector_postprocess(detections[i], *out_size)
                centers = None
                if offsets is not None and bool((det.scores >= self.panoptic_head.score_thresh).any()):
                    off = resample_to_output(offsets[i], stride, size, out_size)
                    scale = off.new_tensor([out_size[1] / size[1], out_size[0] / size[0]]).view(2, 1, 1)
                    centers = pixel_centers(*out_size, device=off.device) + off * scale
                panoptic = self.panoptic_head(
                    logits, det.pred_boxes.tensor, det.scores, det.pred_classes, centers
                )
                results.append({"sem_seg": logits, "instances": det, "panoptic_seg": panoptic})
        return results
