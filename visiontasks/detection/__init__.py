"""Two-stage detection: Faster R-CNN (``get_model("faster_rcnn", ...)``) and its parts.

``TwoStageDetector(backbone, proposer, roi_head, transform)`` composes a backbone, a proposer
(``RegionProposalNetwork`` or ``PrecomputedProposals`` for Fast R-CNN), the Fast R-CNN
``RoIHead`` and the input ``DetectionTransform``.
"""
from visiontasks.detection.anchors import AnchorGenerator, base_anchors
from visiontasks.detection.box_coder import BBOX_CLIP, BoxCoder
from visiontasks.detection.faster_rcnn import build_backbone, faster_rcnn
from visiontasks.detection.poolers import POOLERS, RoIAlign, RoIPool, RoIPooler, build_pooler
from visiontasks.detection.proposals import PrecomputedProposals
from visiontasks.detection.roi_head import RoIHead
from visiontasks.detection.rpn import RegionProposalNetwork, RPNHead
from visiontasks.detection.sampling import IGNORE, BalancedSampler, Matcher, inside_image
from visiontasks.detection.transform import IMAGENET_MEAN, IMAGENET_STD, DetectionTransform
from visiontasks.detection.two_stage import TwoStageDetector

__all__ = [
    "AnchorGenerator", "base_anchors", "BoxCoder", "BBOX_CLIP", "faster_rcnn", "build_backbone",
    "RoIPooler", "RoIPool", "RoIAlign", "build_pooler", "POOLERS", "PrecomputedProposals", "RoIHead",
    "RegionProposalNetwork", "RPNHead", "Matcher", "BalancedSampler", "IGNORE", "inside_image",
    "DetectionTransform", "IMAGENET_MEAN", "IMAGENET_STD", "TwoStageDetector",
]
