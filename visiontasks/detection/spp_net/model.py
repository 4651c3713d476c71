"""SPP-net for detection (He et al. 2014, §4): conv5 once per image, a spatial pyramid per window.

``get_model("spp_net")`` is a ``TwoStageDetector`` whose parts are:

- transform: normalise and pad only (``build_transform("none")``): windows stay in original pixels;
- backbone: a :class:`~visiontasks.detection.spp_net.scale_pyramid.ScalePyramid` around a shared backbone
  — conv5 at one scale (``scales: [688]``, the paper's single-scale setting) or five
  (``[480, 576, 688, 864, 1200]``), each window pooled at the scale where its area is closest to 224²;
- proposer: ``PrecomputedProposals`` (selective search, fast mode, ~2,000 windows per image);
- RoI head: :class:`~visiontasks.detection.spp_net.scale_pyramid.MultiScaleSPP` (levels {6, 3, 2, 1},
  50 bins) → fc6/fc7 sized for the pyramid's width → a softmax predictor.

Training (§4.1): the conv layers are not fine-tuned (``finetune_conv: false``: the backbone is
frozen), only fc6, fc7 and the classifier are; positives are windows with IoU ≥ 0.5, negatives
IoU in [0.1, 0.5), 25 % positives. Then (``classifier: svm``, the paper) per-class SVMs on fc7
and box regressors on the pooled features, exactly R-CNN's fitting stages: the model is an
``RCNN`` (``TwoStageDetector`` + R-CNN's stages ``finetune`` → ``features`` → ``svm`` →
``bbox_reg``) whose head is R-CNN's ``RCNNHead`` around the pyramid pooler, so the feature cache,
hard-negative mining, ridge regression and the fitted predictor are the same code.
``classifier: softmax`` keeps the fine-tuned softmax (one SGD stage, Fast R-CNN-style).

Shape shorthand: R = windows, K = classes incl. background.
"""
from __future__ import annotations

from typing import Any, Sequence

from visiontasks.backbones import build_backbone, freeze
from visiontasks.detection.predictor import FastRCNNPredictor
from visiontasks.detection.proposals import DEFAULT_PROPOSER, PrecomputedProposals, proposal_params
from visiontasks.detection.roi_head import RoIHead
from visiontasks.detection.spp import SPP_LEVELS
from visiontasks.detection.spp_net.scale_pyramid import MultiScaleSPP, ScalePyramid
from visiontasks.detection.svd import compress_fc
from visiontasks.detection.transform import build_transform
from visiontasks.detection.two_stage import TwoStageDetector
from visiontasks.registry import register_model

__all__ = ["spp_net"]


@register_model("spp_net", task="detection")
def spp_net(
    num_classes: int = 21,
    backbone: str = "alexnet",
    pretrained_backbone: bool = False,
    backbone_kwargs: dict[str, Any] | None = None,
    scales: Sequence[int] = (688,),
    max_size: int = 2000,
    min_size: int | None = None,
    finetune_conv: bool = False,
    proposer: dict[str, Any] | None = None,
    proposal_min_size: float = 0.0,
    max_proposals: int | None = 2000,
    pooler_levels: Sequence[int] = SPP_LEVELS,
    target_area: float = 224.0**2,
    roi_batch_size_per_image: int = 128,
    roi_positive_fraction: float = 0.25,
    roi_fg_iou_thresh: float = 0.5,
    roi_bg_iou_lo: float = 0.1,
    box_score_thresh: float = 0.05,
    box_nms_thresh: float = 0.3,
    box_detections_per_img: int = 100,
    loss_weights: dict[str, float] | None = None,
    fc_svd_ranks: Sequence[int | None] | None = None,
    classifier: str = "svm",
    fit_params: dict[str, float] | None = None,
) -> TwoStageDetector:
    """Builds SPP-net's detector.

    Args:
        num_classes: K, background included.
        backbone: a registered backbone ("alexnet" — the AlexNet-like net of the paper's tables;
            "vgg16"; "small" for CPU runs).
        pretrained_backbone: load the backbone's ImageNet weights (offline).
        backbone_kwargs: extra keyword arguments of the backbone builder.
        scales: shorter image sides at which conv5 is computed (one: single-scale 688; the
            paper's five: 480, 576, 688, 864, 1200).
        max_size: cap on the longer side at any scale.
        min_size: a single scale (overrides ``scales``; accepted so that small configs and the
            registry smoke test can set one size for every detector).
        finetune_conv: also train the conv layers (the paper fine-tunes fc layers only).
        proposer: how proposals are made (default selective search, fast mode).
        proposal_min_size: drop proposals with a side below this (original pixels).
        max_proposals: keep at most this many proposals per image.
        pooler_levels: the pyramid (default 6, 3, 2, 1 = 50 bins).
        target_area: the window area a scale should give (224²).
        roi_batch_size_per_image: windows sampled per image in fine-tuning.
        roi_positive_fraction: share of positives (25 %, the paper's 1:3).
        roi_fg_iou_thresh: positives have IoU ≥ this.
        roi_bg_iou_lo: negatives have IoU in [this, roi_fg_iou_thresh).
        box_score_thresh: test-time score threshold.
        box_nms_thresh: test-time per-class NMS threshold (0.3).
        box_detections_per_img: most detections per image.
        fc_svd_ranks: truncated SVD of fc6, fc7 (Fast R-CNN §3.1; the paper: [1024, 256]), None: none.
        loss_weights: multiplier per loss name.
        classifier: "svm" (the paper: R-CNN's SVM and box-regression stages after fine-tuning)
            or "softmax" (the fine-tuned classifier, one stage).
        fit_params: settings of the fitting stages (keys of ``rcnn.FIT_DEFAULTS``: ``svm_C``,
            ``feat_norm``, ``bbox_lambda`` …; default R-CNN's).

    Returns:
        The detector (``TwoStageDetector`` with a scale pyramid and an SPP pooler).
    """
    params = proposal_params(**{**DEFAULT_PROPOSER, **(proposer or {})})
    body = build_backbone(backbone, pretrained_backbone, backbone_kwargs)
    if not finetune_conv:
        freeze(body)
    pyramid = ScalePyramid(body, (min_size,) if min_size is not None else scales, max_size)
    pooler = MultiScaleSPP(pooler_levels, body.stride, target_area)
    head, head_dim = body.box_head(pooler.output_dim(body.out_channels))
    predictor = FastRCNNPredictor(head_dim, num_classes, score_thresh=box_score_thresh, nms_thresh=box_nms_thresh,
                                  detections_per_img=box_detections_per_img)
    sampling = dict(batch_size_per_image=roi_batch_size_per_image, positive_fraction=roi_positive_fraction,
                    fg_iou_thresh=roi_fg_iou_thresh, bg_iou_lo=roi_bg_iou_lo)
    proposer_module = PrecomputedProposals(proposal_min_size, max_proposals)
    transform = build_transform("none", size_divisible=body.stride)
    if classifier == "softmax":
        roi_head = RoIHead(pooler, head, predictor, **sampling)
        model = TwoStageDetector(pyramid, proposer_module, roi_head, transform, loss_weights=loss_weights,
                                 proposal_params=params)
    elif classifier == "svm":
        from visiontasks.detection.rcnn.head import RCNNHead
        from visiontasks.detection.rcnn.model import RCNN, build_fit_params

        roi_head = RCNNHead(pooler, head, predictor, head_dim, pooler.output_dim(body.out_channels), **sampling)
        # the boxes are regressed by the fitted ridge regressors, so fine-tuning trains the classifier only (as R-CNN)
        model = RCNN(pyramid, proposer_module, roi_head, transform,
                     loss_weights={"loss_box_reg": 0.0, **(loss_weights or {})}, proposal_params=params,
                     fit_params=build_fit_params(**(fit_params or {})))
    else:
        raise ValueError(f"classifier must be 'svm' or 'softmax', got {classifier!r}")
    return compress_fc(model, fc_svd_ranks) if fc_svd_ranks else model
