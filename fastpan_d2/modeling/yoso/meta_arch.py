"""YOSO: You Only Segment Once (Hu et al., CVPR 2023) as a detectron2 META_ARCH.

    image -> ResNet C2..C5 -> FeaturePyramidAggregator -> S (d, H/4, W/4)
          -> SeparableDynamicDecoder (n kernels, T stages) -> n x (class over l+1, mask logits)
          -> training: Hungarian set loss at every stage
          -> inference: last stage -> MaskFormer-style panoptic merge at the original size
"""
import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.data import MetadataCatalog
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from detectron2.modeling.postprocessing import sem_seg_postprocess
from detectron2.structures import BitMasks, ImageList, Instances
from torch import nn

from ...data.categories import PanopticCategories
from ..common.semantic import AuxiliarySemanticHead
from ..common.stage_timer import timed_stage
from .aggregator import FeaturePyramidAggregator
from .decoder import SeparableDynamicDecoder
from .inference import merge_panoptic, select_queries
from .loss import HungarianMatcher, SetCriterion
from .targets import panoptic_targets

__all__ = ["YOSO"]


@META_ARCH_REGISTRY.register()
class YOSO(nn.Module):
    @configurable
    def __init__(
        self,
        *,
        backbone,
        in_features,
        aggregator,
        decoder,
        criterion,
        categories,
        pixel_mean,
        pixel_std,
        size_divisibility=32,
        temperature=1.0,
        object_mask_threshold=0.8,
        overlap_threshold=0.8,
        semantic_on=False,
        instance_on=False,
        aux_semantic_weight=0.0,
    ):
        super().__init__()
        self.backbone = backbone
        self.in_features = list(in_features)
        self.aggregator = aggregator
        self.decoder = decoder
        self.criterion = criterion
        self.categories = categories
        self.register_buffer("is_thing", categories.is_thing_table(), persistent=False)
        self.register_buffer("thing_index", categories.contiguous_to_thing_index(), persistent=False)
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), persistent=False)
        self.size_divisibility = max(size_divisibility, getattr(backbone, "size_divisibility", 0))
        self.temperature = temperature
        self.object_mask_threshold = object_mask_threshold
        self.overlap_threshold = overlap_threshold
        self.semantic_on = semantic_on
        self.instance_on = instance_on
        # training-only per-pixel classifier on S (not in the paper; 0 = off, see config.py)
        self.aux_semantic = None
        if aux_semantic_weight > 0:
            self.aux_semantic = AuxiliarySemanticHead(
                decoder.proposal_kernels.shape[1], categories.num_classes, aux_semantic_weight,
                categories.ignore_label,
            )

    @classmethod
    def from_config(cls, cfg):
        y = cfg.MODEL.YOSO
        backbone = build_backbone(cfg)
        shapes = backbone.output_shape()
        meta = MetadataCatalog.get(cfg.DATASETS.TRAIN[0] if cfg.DATASETS.TRAIN else cfg.DATASETS.TEST[0])
        categories = PanopticCategories.from_metadata(meta)
        aggregator = FeaturePyramidAggregator(
            [shapes[f].channels for f in y.IN_FEATURES],
            compress_channels=y.AGGREGATOR.COMPRESS_CHANNELS,
            out_channels=y.HIDDEN_DIM,
            aggregation=y.AGGREGATOR.AGGREGATION,
            deformable=y.AGGREGATOR.DEFORMABLE,
            norm=y.AGGREGATOR.NORM,
            coord_conv=y.AGGREGATOR.COORD_CONV,
        )
        decoder = SeparableDynamicDecoder(
            hidden_dim=y.HIDDEN_DIM,
            num_proposals=y.NUM_PROPOSALS,
            num_classes=categories.num_classes,
            num_stages=y.NUM_STAGES,
            num_blocks=y.NUM_ATTENTION_BLOCKS,
            kernel_size=y.KERNEL_SIZE,
            attention=y.ATTENTION,
            num_heads=y.NUM_HEADS,
            dim_feedforward=y.DIM_FEEDFORWARD,
            dropout=y.DROPOUT,
            num_cls_fcs=y.NUM_CLS_FCS,
            num_mask_fcs=y.NUM_MASK_FCS,
            pointwise_softmax=y.POINTWISE_SOFTMAX,
            share_heads=y.SHARE_HEADS,
        )
        matcher = HungarianMatcher(y.CLASS_WEIGHT, y.MASK_WEIGHT, y.DICE_WEIGHT, y.TRAIN_NUM_POINTS)
        criterion = SetCriterion(
            categories.num_classes,
            matcher,
            class_weight=y.CLASS_WEIGHT,
            mask_weight=y.MASK_WEIGHT,
            dice_weight=y.DICE_WEIGHT,
            no_object_weight=y.NO_OBJECT_WEIGHT,
            num_points=y.TRAIN_NUM_POINTS,
            oversample_ratio=y.OVERSAMPLE_RATIO,
            importance_sample_ratio=y.IMPORTANCE_SAMPLE_RATIO,
        )
        return {
            "backbone": backbone,
            "in_features": y.IN_FEATURES,
            "aggregator": aggregator,
            "decoder": decoder,
            "criterion": criterion,
            "categories": categories,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "size_divisibility": y.SIZE_DIVISIBILITY,
            "temperature": y.TEST.TEMPERATURE,
            "object_mask_threshold": y.TEST.OBJECT_MASK_THRESHOLD,
            "overlap_threshold": y.TEST.OVERLAP_THRESHOLD,
            "semantic_on": y.TEST.SEMANTIC_ON,
            "instance_on": y.TEST.INSTANCE_ON,
            "aux_semantic_weight": y.AUX_SEMANTIC_WEIGHT,
        }

    @property
    def device(self):
        return self.pixel_mean.device

    def preprocess_image(self, batched_inputs):
        images = [(x["image"].to(self.device) - self.pixel_mean) / self.pixel_std for x in batched_inputs]
        return ImageList.from_tensors(images, self.size_divisibility)

    def aggregate(self, images):
        """ImageList -> the aggregated features S (B, d, H/4, W/4) (Sec. 3.2)."""
        feats = self.backbone(images.tensor)
        return self.aggregator([feats[f] for f in self.in_features])

    def predict(self, images):
        """ImageList -> list over stages of (class logits (B, n, l+1), mask logits (B, n, H/4, W/4))."""
        return self.decoder(self.aggregate(images))

    def forward(self, batched_inputs):
        if not self.training:
            return self.inference(batched_inputs)
        images = self.preprocess_image(batched_inputs)
        S = self.aggregate(images)
        outputs = self.decoder(S)
        pad = images.tensor.shape[-2:]
        targets = [panoptic_targets(x["pan_seg"], x["segments_info"], pad, self.device) for x in batched_inputs]
        losses = self.criterion(outputs, targets)
        if self.aux_semantic is not None:
            losses["loss_aux_sem"] = self.aux_semantic(S, batched_inputs, pad)
        return losses

    def inference(self, batched_inputs):
        with timed_stage("preprocess"):
            images = self.preprocess_image(batched_inputs)
        with timed_stage("backbone"):
            feats = self.backbone(images.tensor)
        with timed_stage("heads"):
            cls_logits, mask_logits = self.decoder(self.aggregator([feats[f] for f in self.in_features]))[-1]
        with timed_stage("postprocess"):
            return [
                self.postprocess(cls_logits[i], mask_logits[i], images, i, x)
                for i, x in enumerate(batched_inputs)
            ]

    def _masks_to_output(self, masks, images, i, height, width):
        """(K, H/4, W/4) logits of the padded image -> (K, height, width) probabilities."""
        if masks.shape[0] == 0:
            return masks.new_zeros((0, height, width))
        masks = F.interpolate(masks[None], size=images.tensor.shape[-2:], mode="bilinear", align_corners=False)[0]
        h, w = images.image_sizes[i]
        if (h, w) == (height, width):  # input at the original size: crop the padding, no 2nd resize
            return masks[:, :h, :w].sigmoid()
        return sem_seg_postprocess(masks, (h, w), height, width).sigmoid()

    def postprocess(self, cls_logits, mask_logits, images, i, x):
        height = x.get("height", images.image_sizes[i][0])
        width = x.get("width", images.image_sizes[i][1])
        keep, scores, labels, probs = select_queries(cls_logits, self.temperature, self.object_mask_threshold)
        mask_probs = self._masks_to_output(mask_logits[keep], images, i, height, width)
        seg, segments_info = merge_panoptic(scores, labels, mask_probs, self.is_thing, self.overlap_threshold)
        out = {"panoptic_seg": (seg, segments_info)}
        if self.semantic_on:
            all_masks = self._masks_to_output(mask_logits, images, i, height, width)
            out["sem_seg"] = torch.einsum("qc,qhw->chw", probs[:, :-1], all_masks)
        if self.instance_on:
            thing = self.is_thing[labels]
            inst = Instances((height, width))
            m = mask_probs[thing]
            inst.pred_masks = m >= 0.5
            inst.pred_boxes = BitMasks(inst.pred_masks).get_bounding_boxes()
            # mask-quality-weighted score, as MaskFormer's instance inference does
            quality = (m * inst.pred_masks).flatten(1).sum(1) / inst.pred_masks.flatten(1).sum(1).clamp(min=1)
            inst.scores = scores[thing] * quality
            inst.pred_classes = self.thing_index[labels[thing]]
            out["instances"] = inst
        return out
