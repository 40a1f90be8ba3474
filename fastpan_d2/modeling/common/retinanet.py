"""RetinaNet as a branch of a larger network (shared by FPSNet and Single-Shot Panoptic).

detectron2's ``RetinaNet`` is a whole meta-arch (it owns the backbone and the input
normalisation). Panoptic networks need the same detector as one branch on top of features
they compute themselves, so ``RetinaNetBranch`` holds only the detector's own parts, all of
them detectron2's: ``RetinaNetHead``, ``DefaultAnchorGenerator`` (via
``build_anchor_generator``), ``Matcher``, ``Box2BoxTransform``, fvcore's sigmoid focal loss
and detectron2's dense box-regression loss (smooth-L1 / GIoU / DIoU / CIoU). The training
targets and the decoding follow detectron2 v0.6's ``RetinaNet`` step for step.

API
---
Build it from a config (``cfg.MODEL.RETINANET`` + ``cfg.MODEL.ANCHOR_GENERATOR``, and
``cfg.TEST.DETECTIONS_PER_IMAGE``)::

    branch = RetinaNetBranch(cfg, backbone.output_shape())   # Dict[str, ShapeSpec]

or from arguments (see ``__init__``). ``cfg.MODEL.RETINANET.IN_FEATURES`` names the levels
it uses and ``cfg.MODEL.RETINANET.NUM_CLASSES`` is the number of THING classes; classes are
thing indices (0..NUM_CLASSES-1), as in ``gt_instances.gt_classes`` from fastpan_d2's mapper.

``losses, detections = branch(images, features, gt_instances=None, return_detections=None)``

* ``images``: the ``ImageList`` the features were computed from (only ``image_sizes`` is read);
* ``features``: ``List[Tensor]``, one (N, C, Hi, Wi) map per level, in ``in_features`` order
  (a ``Dict[str, Tensor]`` is accepted too; the branch picks ``in_features`` from it);
* ``gt_instances``: ``List[Instances]`` with ``gt_boxes`` and ``gt_classes`` (thing index),
  required when ``self.training``;
* ``return_detections``: defaults to ``not self.training``. When True in training the
  detections are decoded from DETACHED predictions under ``torch.no_grad()`` (nothing flows
  back into the detector through them), e.g. for FPSNet's attention masks.

Returns ``(losses, detections)``:

* ``losses``: ``{"loss_cls", "loss_box_reg"}`` (unweighted, normalised by an EMA of the number
  of positive anchors exactly like detectron2's RetinaNet) in training, else ``{}``;
* ``detections``: ``List[Instances]`` (one per image, ``image_size`` = that image's size
  in ``images.image_sizes``) with ``pred_boxes`` (``Boxes``, XYXY at the input-tensor scale,
  clipped to the image), ``scores`` (sigmoid probability) and ``pred_classes`` (thing index),
  sorted by score descending, after score threshold, per-level top-k, per-class
  ``batched_nms`` and ``max_detections_per_image``; or ``None`` when not asked for.

``branch.predict(features)`` gives the raw per-level ``(logits, deltas)``;
``branch.losses(...)`` and ``branch.decode(...)`` are the two halves of ``forward``.
"""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec, batched_nms, cat
from detectron2.modeling.anchor_generator import build_anchor_generator
from detectron2.modeling.box_regression import Box2BoxTransform, _dense_box_regression_loss
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.meta_arch.dense_detector import permute_to_N_HWA_K
from detectron2.modeling.meta_arch.retinanet import RetinaNetHead
from detectron2.structures import Boxes, ImageList, Instances, pairwise_iou
from detectron2.utils.events import get_event_storage
from fvcore.nn import sigmoid_focal_loss_jit
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["RetinaNetBranch"]


class RetinaNetBranch(nn.Module):
    """RetinaNet head + anchors + losses + decoding on given feature maps (see module doc)."""

    @configurable
    def __init__(
        self,
        *,
        head: nn.Module,
        anchor_generator: nn.Module,
        in_features: Sequence[str],
        num_classes: int,
        box2box_transform: Box2BoxTransform,
        anchor_matcher: Matcher,
        focal_loss_alpha: float = 0.25,
        focal_loss_gamma: float = 2.0,
        smooth_l1_beta: float = 0.1,
        box_reg_loss_type: str = "smooth_l1",
        test_score_thresh: float = 0.05,
        test_topk_candidates: int = 1000,
        test_nms_thresh: float = 0.5,
        max_detections_per_image: int = 100,
    ):
        """
        Args:
            head: returns ``(logits, deltas)``, per level (N, A*K, Hi, Wi) and (N, A*4, Hi, Wi).
            anchor_generator: detectron2 anchor generator for the same levels.
            in_features: names of the levels, low stride first (used to pick from a dict).
            num_classes: K, the number of thing classes.
            box2box_transform, anchor_matcher: detectron2's, as in ``RetinaNet``.
            The rest: as the same-named arguments of detectron2's ``RetinaNet``.
        """
        super().__init__()
        self.head = head
        self.anchor_generator = anchor_generator
        self.in_features = list(in_features)
        self.num_classes = num_classes
        self.box2box_transform = box2box_transform
        self.anchor_matcher = anchor_matcher
        self.focal_loss_alpha = focal_loss_alpha
        self.focal_loss_gamma = focal_loss_gamma
        self.smooth_l1_beta = smooth_l1_beta
        self.box_reg_loss_type = box_reg_loss_type
        self.test_score_thresh = test_score_thresh
        self.test_topk_candidates = test_topk_candidates
        self.test_nms_thresh = test_nms_thresh
        self.max_detections_per_image = max_detections_per_image
        # EMA of the number of positive anchors per batch (detectron2's loss normaliser).
        self.loss_normalizer = 100.0
        self.loss_normalizer_momentum = 0.9

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        rcfg = cfg.MODEL.RETINANET
        shapes = [input_shape[f] for f in rcfg.IN_FEATURES]
        return {
            "head": RetinaNetHead(cfg, shapes),
            "anchor_generator": build_anchor_generator(cfg, shapes),
            "in_features": rcfg.IN_FEATURES,
            "num_classes": rcfg.NUM_CLASSES,
            "box2box_transform": Box2BoxTransform(weights=rcfg.BBOX_REG_WEIGHTS),
            "anchor_matcher": Matcher(
                rcfg.IOU_THRESHOLDS, rcfg.IOU_LABELS, allow_low_quality_matches=True
            ),
            "focal_loss_alpha": rcfg.FOCAL_LOSS_ALPHA,
            "focal_loss_gamma": rcfg.FOCAL_LOSS_GAMMA,
            "smooth_l1_beta": rcfg.SMOOTH_L1_LOSS_BETA,
            "box_reg_loss_type": rcfg.BBOX_REG_LOSS_TYPE,
            "test_score_thresh": rcfg.SCORE_THRESH_TEST,
            "test_topk_candidates": rcfg.TOPK_CANDIDATES_TEST,
            "test_nms_thresh": rcfg.NMS_THRESH_TEST,
            "max_detections_per_image": cfg.TEST.DETECTIONS_PER_IMAGE,
        }

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        images: ImageList,
        features: Union[List[Tensor], Dict[str, Tensor]],
        gt_instances: Optional[List[Instances]] = None,
        return_detections: Optional[bool] = None,
    ) -> Tuple[Dict[str, Tensor], Optional[List[Instances]]]:
        if isinstance(features, dict):
            features = [features[f] for f in self.in_features]
        if return_detections is None:
            return_detections = not self.training
        logits, deltas = self.predict(features)
        anchors = self.anchor_generator(features)

        losses = {}
        if self.training:
            assert gt_instances is not None, "RetinaNetBranch needs gt_instances in training"
            gt_labels, gt_boxes = self.label_anchors(anchors, gt_instances)
            losses = self.losses(anchors, logits, deltas, gt_labels, gt_boxes)
        detections = None
        if return_detections:
            with torch.no_grad():
                detections = self.decode(
                    anchors, [x.detach() for x in logits], [x.detach() for x in deltas],
                    images.image_sizes,
                )
        return losses, detections

    def predict(self, features: List[Tensor]) -> Tuple[List[Tensor], List[Tensor]]:
        """Per level (N, Hi*Wi*A, K) logits and (N, Hi*Wi*A, 4) box deltas."""
        logits, deltas = self.head(features)
        logits = [permute_to_N_HWA_K(x, self.num_classes) for x in logits]
        deltas = [permute_to_N_HWA_K(x, 4) for x in deltas]
        return logits, deltas

    # ------------------------------------------------------------------ training
    @torch.no_grad()
    def label_anchors(self, anchors: List[Boxes], gt_instances: List[Instances]):
        """Per image: anchor labels (R,) in {-1 ignore, 0..K-1, K background} and matched
        GT boxes (R, 4), R = all anchors of all levels (detectron2 RetinaNet's rule)."""
        anchors = Boxes.cat(anchors)
        gt_labels, matched_boxes = [], []
        for gt in gt_instances:
            if len(gt) > 0:
                quality = pairwise_iou(gt.gt_boxes, anchors)
                matched_idxs, anchor_labels = self.anchor_matcher(quality)
                boxes_i = gt.gt_boxes.tensor[matched_idxs]
                labels_i = gt.gt_classes[matched_idxs].clone()
                labels_i[anchor_labels == 0] = self.num_classes
                labels_i[anchor_labels == -1] = -1
            else:
                boxes_i = torch.zeros_like(anchors.tensor)
                labels_i = torch.full(
                    (len(anchors),), self.num_classes, dtype=torch.long, device=anchors.device
                )
            gt_labels.append(labels_i)
            matched_boxes.append(boxes_i)
        return gt_labels, matched_boxes

    def losses(self, anchors, logits, deltas, gt_labels, gt_boxes) -> Dict[str, Tensor]:
        """Sigmoid focal loss over valid anchors + box regression over positives, both
        divided by the EMA of the number of positive anchors."""
        gt_labels = torch.stack(gt_labels)  # (N, R)
        valid = gt_labels >= 0
        pos = valid & (gt_labels != self.num_classes)
        num_pos = pos.sum().item()
        try:
            get_event_storage().put_scalar("num_pos_anchors", num_pos / len(gt_labels))
        except AssertionError:  # no EventStorage outside a trainer
            pass
        m = self.loss_normalizer_momentum
        if self.training:
            self.loss_normalizer = m * self.loss_normalizer + (1 - m) * max(num_pos, 1)
        normalizer = self.loss_normalizer

        target = F.one_hot(gt_labels[valid], num_classes=self.num_classes + 1)[:, :-1]
        pred_logits = cat(logits, dim=1)
        loss_cls = sigmoid_focal_loss_jit(
            pred_logits[valid],
            target.to(pred_logits.dtype),
            alpha=self.focal_loss_alpha,
            gamma=self.focal_loss_gamma,
            reduction="sum",
        )
        loss_box = _dense_box_regression_loss(
            anchors,
            self.box2box_transform,
            deltas,
            gt_boxes,
            pos,
            box_reg_loss_type=self.box_reg_loss_type,
            smooth_l1_beta=self.smooth_l1_beta,
        )
        return {"loss_cls": loss_cls / normalizer, "loss_box_reg": loss_box / normalizer}

    # ------------------------------------------------------------------ inference
    def decode(
        self,
        anchors: List[Boxes],
        logits: List[Tensor],
        deltas: List[Tensor],
        image_sizes: List[Tuple[int, int]],
    ) -> List[Instances]:
        """Score threshold and top-k per level, box decoding, clipping, per-class NMS."""
        results = []
        for i, size in enumerate(image_sizes):
            boxes_all, scores_all, classes_all = [], [], []
            for anchors_l, logits_l, deltas_l in zip(anchors, logits, deltas):
                scores = logits_l[i].sigmoid().flatten()  # (HWA*K,)
                keep = scores > self.test_score_thresh
                cand = keep.nonzero().squeeze(1)
                scores = scores[cand]
                k = min(self.test_topk_candidates, scores.numel())
                scores, order = scores.topk(k)  # sorted, descending
                cand = cand[order]
                anchor_idx = cand // self.num_classes
                boxes = self.box2box_transform.apply_deltas(
                    deltas_l[i][anchor_idx], anchors_l.tensor[anchor_idx]
                )
                boxes_all.append(boxes)
                scores_all.append(scores)
                classes_all.append(cand % self.num_classes)
            boxes = Boxes(cat(boxes_all))
            boxes.clip(size)
            scores, classes = cat(scores_all), cat(classes_all)
            keep = batched_nms(boxes.tensor, scores, classes, self.test_nms_thresh)
            keep = keep[: self.max_detections_per_image]
            results.append(
                Instances(size, pred_boxes=boxes[keep], scores=scores[keep], pred_classes=classes[keep])
            )
        return results

