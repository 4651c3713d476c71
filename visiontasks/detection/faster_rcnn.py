"""Faster R-CNN (Ren et al. 2015): a ``TwoStageDetector`` with a Region Proposal Network.

``get_model("faster_rcnn", num_classes=21, backbone="vgg16")`` builds the paper's VGG16 model:
conv1_1 … conv5_3, a 512-channel RPN with 9 anchors (2·9 softmax scores, 4·9 deltas), RoI max
pooling 7×7, fc6/fc7 (4096) and 21-way classifier + 84 class-specific box outputs. Every
argument is a plain number, string or list so that YAML configs can pass them straight through.

Defaults follow the paper and py-faster-rcnn's end-to-end VOC setting, except
``roi_bg_iou_lo = 0.1`` (Fast R-CNN's value; py-faster-rcnn's end-to-end config uses 0.0).
"""
from __future__ import annotations

from typing import Any, Sequence

from visiontasks.backbones import build_backbone
from visiontasks.detection.anchors import AnchorGenerator
from visiontasks.detection.roi_head import build_roi_head
from visiontasks.detection.rpn import RegionProposalNetwork
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
    rpn_pre_nms_top_n_train: int = 12000,
    rpn_pre_nms_top_n_test: int = 6000,
    rpn_post_nms_top_n_train: int = 2000,
    rpn_post_nms_top_n_test: int = 300,
    rpn_nms_thresh: float = 0.7,
    rpn_fg_iou_thresh: float = 0.7,
    rpn_bg_iou_thresh: float = 0.3,
    rpn_batch_size_per_image: int = 256,
    rpn_positive_fraction: float = 0.5,
    rpn_min_size: float = 16,
    rpn_allow_border: bool = False,
    rpn_smooth_l1_beta: float = 1.0 / 9,
    pooler: str = "roi_pool",
    roi_batch_size_per_image: int = 128,
    roi_positive_fraction: float = 0.25,
    roi_fg_iou_thresh: float = 0.5,
    roi_bg_iou_lo: float = 0.1,
    box_smooth_l1_beta: float = 1.0,
    box_score_thresh: float = 0.05,
    box_nms_thresh: float = 0.3,
    box_detections_per_img: int = 100,
    loss_weights: dict[str, float] | None = None,
    fc_svd_ranks: Sequence[int | None] | None = None,
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
        rpn_pre_nms_top_n_train: boxes kept before the proposal NMS in training.
        rpn_pre_nms_top_n_test: the same at test time.
        rpn_post_nms_top_n_train: proposals kept after NMS in training.
        rpn_post_nms_top_n_test: the same at test time.
        rpn_nms_thresh: proposal NMS IoU threshold.
        rpn_fg_iou_thresh: anchors with IoU ≥ this are positive.
        rpn_bg_iou_thresh: anchors with IoU < this are negative.
        rpn_batch_size_per_image: anchors sampled per image.
        rpn_positive_fraction: largest share of positive anchors.
        rpn_min_size: smallest proposal side, in original-image pixels.
        rpn_allow_border: train on anchors that cross the image border (the paper ignores them).
        rpn_smooth_l1_beta: smooth-L1 beta of the RPN box loss (1/9 = py-faster-rcnn's sigma 3).
        pooler: "roi_pool" (Fast R-CNN) or "roi_align".
        roi_batch_size_per_image: RoIs sampled per image.
        roi_positive_fraction: largest share of foreground RoIs.
        roi_fg_iou_thresh: RoIs with IoU ≥ this are foreground.
        roi_bg_iou_lo: RoIs with IoU in [this, roi_fg_iou_thresh) are background.
        box_smooth_l1_beta: smooth-L1 beta of the RoI-head box loss (1 in Fast R-CNN).
        box_score_thresh: test-time score threshold.
        box_nms_thresh: test-time per-class NMS threshold.
        box_detections_per_img: most detections per image.
        fc_svd_ranks: truncated SVD of fc6, fc7 (Fast R-CNN §3.1; the paper: [1024, 256]), None: none.
        loss_weights: multiplier per loss name (e.g. ``{"loss_box_reg": 2.0}``).

    Returns:
        The detector (``TwoStageDetector``).
    """
    body = build_backbone(backbone, pretrained_backbone, backbone_kwargs)
    anchors = AnchorGenerator(anchor_sizes, aspect_ratios, body.stride)
    rpn = RegionProposalNetwork(
        body.out_channels, anchors, mid_channels=rpn_channels, objectness=rpn_objectness,
        pre_nms_top_n=(rpn_pre_nms_top_n_train, rpn_pre_nms_top_n_test),
        post_nms_top_n=(rpn_post_nms_top_n_train, rpn_post_nms_top_n_test),
        nms_thresh=rpn_nms_thresh, fg_iou_thresh=rpn_fg_iou_thresh, bg_iou_thresh=rpn_bg_iou_thresh,
        batch_size_per_image=rpn_batch_size_per_image, positive_fraction=rpn_positive_fraction,
        min_size=rpn_min_size, allow_border=rpn_allow_border, smooth_l1_beta=rpn_smooth_l1_beta,
    )
    roi_head = build_roi_head(
        body, num_classes, pooler, batch_size_per_image=roi_batch_size_per_image,
        positive_fraction=roi_positive_fraction, fg_iou_thresh=roi_fg_iou_thresh, bg_iou_lo=roi_bg_iou_lo,
        score_thresh=box_score_thresh, nms_thresh=box_nms_thresh, detections_per_img=box_detections_per_img,
        smooth_l1_beta=box_smooth_l1_beta,
    )
    transform = build_transform("resize", min_size, max_size, size_divisible=body.stride)
    model = TwoStageDetector(body, rpn, roi_head, transform, loss_weights=loss_weights)
    return compress_fc(model, fc_svd_ranks) if fc_svd_ranks else model
