"""Detection: the R-CNN family on one ``TwoStageDetector`` and its parts.

``TwoStageDetector(backbone, proposer, roi_head, transform)`` composes a backbone, a proposer
(``RegionProposalNetwork`` for Faster R-CNN, ``PrecomputedProposals`` for Fast R-CNN / SPP-net),
an ``RoIHead`` (pooler → box head → predictor) and the input transform. ``Detector`` is the base
every detector shares (input checks, ``difficult`` handling, loss weights, proposals).
"""
from visiontasks.detection.anchors import AnchorGenerator, base_anchors
from visiontasks.detection.base import Detector, check_inputs, drop_difficult
from visiontasks.detection.box_coder import BBOX_CLIP, BoxCoder
from visiontasks.detection.faster_rcnn import faster_rcnn
from visiontasks.detection.fast_rcnn import fast_rcnn
from visiontasks.detection.poolers import POOLERS, RoIAlign, RoIPool, RoIPooler, build_pooler
from visiontasks.detection.predictor import FastRCNNPredictor
from visiontasks.detection.proposals import PrecomputedProposals
from visiontasks.detection.rcnn import RCNN, rcnn
from visiontasks.detection.roi_head import RoIHead, build_roi_head
from visiontasks.detection.rpn import RegionProposalNetwork, RPNHead
from visiontasks.detection.sampling import IGNORE, BalancedSampler, Matcher, inside_image
from visiontasks.detection.settings import FitSettings, RoIHeadSettings, RPNSettings, TestSettings
from visiontasks.detection.spp import SpatialPyramidPool, SpatialPyramidPooling2d, project_windows
from visiontasks.detection.spp_net import (MultiScaleSPP, PyramidFeatures, ScalePyramid, SPPClassifier, choose_scales,
                                          spp_alexnet, spp_net)
from visiontasks.detection.transform import (IMAGENET_MEAN, IMAGENET_STD, DetectionTransform, WarpTransform,
                                             build_transform)
from visiontasks.detection.two_stage import TwoStageDetector
from visiontasks.detection.yolo import YOLOv1, fast_yolo, yolov1

__all__ = [
    "AnchorGenerator", "base_anchors", "BoxCoder", "BBOX_CLIP", "faster_rcnn", "fast_rcnn",
    "Detector", "check_inputs", "drop_difficult", "FastRCNNPredictor", "build_roi_head",
    "RoIPooler", "RoIPool", "RoIAlign", "build_pooler", "POOLERS", "PrecomputedProposals", "RoIHead",
    "SpatialPyramidPool", "SpatialPyramidPooling2d", "project_windows", "spp_net", "spp_alexnet", "SPPClassifier", "ScalePyramid",
    "PyramidFeatures", "MultiScaleSPP", "choose_scales",
    "RegionProposalNetwork", "RPNHead", "RPNSettings", "RoIHeadSettings", "TestSettings", "FitSettings", "Matcher", "BalancedSampler", "IGNORE", "inside_image",
    "DetectionTransform", "WarpTransform", "build_transform", "IMAGENET_MEAN", "IMAGENET_STD", "TwoStageDetector",
    "YOLOv1", "yolov1", "fast_yolo",
]
