"""Config keys of Single-Shot Panoptic Segmentation (Weber et al.); defaults are the paper's.

The backbone (ResNet-FPN P2-P7: ``build_resnet_fpn_p2_p7_backbone``) and the RetinaNet
detection branch use detectron2's own keys (``MODEL.RESNETS``, ``MODEL.FPN``,
``MODEL.RETINANET``, ``MODEL.ANCHOR_GENERATOR``); the Base-SingleShotPanoptic.yaml configs set
them to the paper's values (every level P2-P7, focal loss + smooth-L1).
"""
from detectron2.config import CfgNode as CN


def add_single_shot_config(cfg):
    cfg.MODEL.SINGLE_SHOT = CN()
    ss = cfg.MODEL.SINGLE_SHOT
    # Loss L = λo (L_FL + L_reg) + λs L_s + λi L_i (Sec. III-C). Tables I and III: 0.5 / 0.5 / 0.01.
    ss.LAMBDA_O = 0.5
    ss.LAMBDA_S = 0.5
    ss.LAMBDA_I = 0.01

    # Semantic branch (Fig. 3): Panoptic-FPN style head on P2..P5 with GroupNorm + ReLU, upsampled
    # to 1/4, summed, one conv to logits over ALL classes (things and stuff).
    ss.SEMANTIC = CN()
    ss.SEMANTIC.IN_FEATURES = ["p2", "p3", "p4", "p5"]
    ss.SEMANTIC.CONVS_DIM = 128
    ss.SEMANTIC.COMMON_STRIDE = 4
    ss.SEMANTIC.NORM = "GN"
    ss.SEMANTIC.IGNORE_VALUE = 255

    # Instance-centre branch (Sec. III-B): same architecture as the semantic branch, 2 channels =
    # (dx, dy) from each pixel to the centre of its instance's box, in input pixels; L1 on thing pixels.
    # The paper trains it only for the closest-centre policy.
    ss.CENTER_BRANCH = CN()
    ss.CENTER_BRANCH.ENABLED = True

    # Parameter-free panoptic head (Sec. III-A/B/C).
    ss.PANOPTIC = CN()
    # Same-class overlap policy: "closest_center" (CC) | "highest_confidence" (HC) | "smallest_first" (SF).
    ss.PANOPTIC.OVERLAP_POLICY = "closest_center"
    ss.PANOPTIC.SCORE_THRESH = 0.4  # confidence threshold on the detector's outputs (Sec. IV-B)
    # Table IV switches: pixels the semantic branch calls a thing that no detection explains become
    # void ('unknown') instead of the best stuff class; stuff segments smaller than STUFF_AREA_LIMIT
    # pixels (at the output resolution) are removed (void). 0 disables the removal.
    ss.PANOPTIC.UNKNOWN = True
    ss.PANOPTIC.STUFF_AREA_LIMIT = 4096
