"""Faster R-CNN (Ren et al. 2015): a ``TwoStageDetector`` with a Region Proposal Network.

``get_model("faster_rcnn", num_classes=21, backbone="vgg16")`` builds the paper's VGG16 model:
conv1_1 … conv5_3, a 512-channel RPN with 9 anchors (2·9 softmax scores, 4·9 deltas), RoI max
pooling 7×7, fc6/fc7 (4096) and 21-way classifier + 84 class-specific box outputs.

Architecture arguments are plain numbers, strings or lists; the training and test settings are
grouped (``rpn``, ``roi``, ``test``: :mod:`visiontasks.detection.settings`, each default cited to
py-faster-rcnn) and a config overrides them by name (``model: {roi: {positive_fraction: 0.5}}``).
Defaults follow the paper and py-faster-rcnn's end-to-end VOC setting, except ``roi.bg_iou_lo =
0.1`` (Fast R-CNN's value; py-faster-rcnn's end-to-end config uses 0.0).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from visiontasks.backbones import build_backbone
from visiontasks.detection.anchors import AnchorGenerator
from visiontasks.detection.faster_rcnn.alternating import attach_alternating, parse_alternating
from visiontasks.detection.roi_head import build_roi_head
from visiontasks.detection.rpn import RegionProposalNetwork
from visiontasks.detection.settings import (FASTER_RCNN_ROI, FASTER_RCNN_RPN, PAPER_TEST, RoIHeadSettings, RPNSettings,
                                            TestSettings, resolve, two_stage_renamed)
from visiontasks.detection.svd import compress_fc
from visiontasks.detection.transform import build_transform
from visiontasks.detection.two_stage import TwoStageDetector
from visiontasks.registry import register_model

__all__ = ["faster_rcnn"]


@register_model("faster_rcnn", task="detection")
def faster_rcnn(
    num_classes: int = 21,
    backbone: str = "vgg16",
    pretrained_backbone: bool = False,
    backbone_kwargs: dict[str, Any] | None = None,
    min_size: int | Sequence[int] = 600,
    max_size: int = 1000,
    anchor_sizes: Sequence[float] = (128, 256, 512),
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
    rpn_channels: int | None = None,
    rpn_objectness: str = "softmax",
    pooler: str = "roi_pool",
    rpn: RPNSettings | Mapping[str, Any] | None = FASTER_RCNN_RPN,
    roi: RoIHeadSettings | Mapping[str, Any] | None = FASTER_RCNN_ROI,
    test: TestSettings | Mapping[str, Any] | None = PAPER_TEST,
    loss_weights: dict[str, float] | None = None,
    fc_svd_ranks: Sequence[int | None] | None = None,
    training: str = "joint",
    stages: Mapping[str, Any] | None = None,
) -> TwoStageDetector:
    """Builds Faster R-CNN.

    Args:
        num_classes: K, background included (21 for VOC).
        backbone: a registered backbone name ("vgg16", "resnet50", "resnet18", "alexnet", "small").
        pretrained_backbone: load the backbone's ImageNet weights (offline, from the hub cache).
        backbone_kwargs: extra keyword arguments of the backbone builder (e.g. ``frozen_stages``).
        min_size: shorter input side (a list: one drawn per training image; the last at test).
        max_size: cap on the longer input side.
        anchor_sizes: anchor sides in input pixels.
        aspect_ratios: anchor height/width ratios.
        rpn_channels: width of the RPN 3×3 conv (default: the backbone's channels; 512 for VGG16).
        rpn_objectness: "softmax" (2A scores, the paper) or "sigmoid" (A scores).
        pooler: "roi_pool" (Fast R-CNN) or "roi_align".
        rpn: the RPN's matching, sampling, proposal and loss settings (overrides by name:
            ``{"fg_iou_thresh": 0.6}``; ``{"loss_weighting": "paper", "loss_lambda": 10}`` for the
            paper's equation 1); default py-faster-rcnn's, see :class:`RPNSettings`.
        roi: the RoI head's sampling (128 RoIs per image, 25 % foreground IoU ≥ 0.5, background
            IoU in [0.1, 0.5)) and box-loss beta; see :class:`RoIHeadSettings`.
        test: score threshold 0.05, per-class NMS 0.3, 100 detections; see :class:`TestSettings`.
        fc_svd_ranks: truncated SVD of fc6, fc7 (Fast R-CNN §3.1; the paper: [1024, 256]), None: none.
        loss_weights: multiplier per loss name (e.g. ``{"loss_box_reg": 2.0}``).
        training: "joint" (approximate joint training, §3.2; one SGD stage) or "alternating" (the
            paper's 4-step training, :mod:`visiontasks.detection.faster_rcnn.alternating`).
        stages: for "alternating", each step's ``train:`` overrides: ``{rpn1: {max_iters: …},
            fast_rcnn1: …, rpn2: …, fast_rcnn2: …}`` (a missing step is one line naming it).

    Returns:
        The detector (``TwoStageDetector``).
    """
    steps = parse_alternating(training, stages)
    body = build_backbone(backbone, pretrained_backbone, backbone_kwargs)
    anchors = AnchorGenerator(anchor_sizes, aspect_ratios, body.stride)
    proposer = RegionProposalNetwork(body.out_channels, anchors, mid_channels=rpn_channels, objectness=rpn_objectness,
                                     settings=resolve(rpn, FASTER_RCNN_RPN, "rpn"))
    roi_head = build_roi_head(body, num_classes, pooler, roi=resolve(roi, FASTER_RCNN_ROI, "roi"),
                              test=resolve(test, PAPER_TEST, "test"))
    transform = build_transform("resize", min_size, max_size, size_divisible=body.stride)
    model = TwoStageDetector(body, proposer, roi_head, transform, loss_weights=loss_weights)
    model = compress_fc(model, fc_svd_ranks) if fc_svd_ranks else model
    return attach_alternating(model, steps) if steps is not None else model


#: The flat arguments before the settings were grouped (translated in older checkpoints' configs).
faster_rcnn.renamed_keys = two_stage_renamed(rpn=True)
