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

Precision: ``load_model(precision="bf16")`` runs conv5 at every scale and fc6/fc7 under bf16
autocast, the images handed to the body in bf16 and channels-last (``ScalePyramid``); the pyramid's
max pooling is exact in any dtype. ``feature_precision: bf16`` does the same in the ``features``
stage (``RCNN.extract``, R-CNN's code).

Shape shorthand: R = windows, K = classes incl. background.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from visiontasks.backbones import build_backbone, freeze
from visiontasks.detection.proposals import DEFAULT_PROPOSER, PrecomputedProposals, proposal_params
from visiontasks.detection.roi_head import RoIHead, build_predictor
from visiontasks.detection.settings import (PAPER_TEST, SPP_NET_ROI, FitSettings, RoIHeadSettings,
                                            TestSettings, resolve, two_stage_renamed)
from visiontasks.detection.receptive_field import projection_offset
from visiontasks.detection.spp import SPP_LEVELS
from visiontasks.detection.spp_net.fc6_init import init_fc6_from_backbone, resolve_fc6_init
from visiontasks.detection.spp_net.scale_pyramid import MultiScaleSPP, ScalePyramid
from visiontasks.detection.svd import compress_fc
from visiontasks.detection.transform import build_transform
from visiontasks.detection.two_stage import TwoStageDetector
from visiontasks.registry import register_model

__all__ = ["spp_net", "SPP_NET_FIT"]

#: SPP-net's fitting stages: R-CNN's SVM settings (``spp_train.m`` l. 43-45: svm_C 10^-3, bias_mult 10,
#: pos_loss_weight 2; ``spp_exp_train_and_test_voc.m`` l. 25: negatives IoU < 0.3; features scaled to
#: norm 20, ``spp_scale_features.m``) and its own box regression (``bbox_regression/spp_train_bbox_regressor.m``
#: l. 36-38 and ``experiments/spp_exp_bbox_reg_train_and_test_voc.m`` l. 37-42: min_overlap 0.5, lambda
#: 4000, on the pooled conv5 features, layer 5; examples gathered at IoU ≥ 0.5, l. 172, fitted on
#: ``O > min_overlap``, l. 90 — so IoU > 0.5, as our stage's strict threshold), not R-CNN's 0.6 / 1000.
SPP_NET_FIT = FitSettings(bbox_lambda=4000.0, bbox_iou_thresh=0.5)


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
    roi: RoIHeadSettings | Mapping[str, Any] | None = SPP_NET_ROI,
    test: TestSettings | Mapping[str, Any] | None = PAPER_TEST,
    loss_weights: dict[str, float] | None = None,
    fc_svd_ranks: Sequence[int | None] | None = None,
    classifier: str = "svm",
    fc6_init: str | None = None,
    fit_params: FitSettings | Mapping[str, Any] | None = SPP_NET_FIT,
    feature_precision: str = "fp32",
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
        roi: fine-tuning sampling (overrides by name): 128 windows, 25 % positives (IoU ≥ 0.5, the
            paper's 1:3), negatives IoU in [0.1, 0.5); see :data:`~visiontasks.detection.settings.SPP_NET_ROI`.
        test: score threshold 0.05, per-class NMS 0.3, 100 detections (:class:`TestSettings`).
        fc_svd_ranks: truncated SVD of fc6, fc7 (Fast R-CNN §3.1; the paper: [1024, 256]), None: none.
        loss_weights: multiplier per loss name.
        classifier: "svm" (the paper: R-CNN's SVM and box-regression stages after fine-tuning)
            or "softmax" (the fine-tuned classifier, one stage).
        fc6_init: "imagenet" (the backbone's ImageNet fc6 on its pyramid level — AlexNet's 6×6 —
            and zeros on the others, so fc6 starts as the ImageNet fc6; ``spp_net/fc6_init.py``),
            "random", or None: "imagenet" when ``pretrained_backbone`` and the backbone's fc6 fits
            a level, else "random". "imagenet" without ImageNet weights or a fitting fc6 is an
            ``InputError`` naming ``fc6_init``.
        fit_params: settings of the fitting stages (overrides by name of :class:`FitSettings`:
            ``svm_C``, ``feat_norm``, ``bbox_lambda`` …; default :data:`SPP_NET_FIT`: R-CNN's SVMs,
            SPP-net's box regression, IoU > 0.5 and λ = 4000).
        feature_precision: "fp32" or "bf16": the precision of the ``features`` stage's conv5 and
            fc6/fc7 (``classifier: svm``; ``RCNN.extract``). Test-time precision is ``load_model``'s.

    Returns:
        The detector (``TwoStageDetector`` with a scale pyramid and an SPP pooler).
    """
    params = proposal_params(**{**DEFAULT_PROPOSER, **(proposer or {})})
    body = build_backbone(backbone, pretrained_backbone, backbone_kwargs)
    if not finetune_conv:
        freeze(body)
    pyramid = ScalePyramid(body, (min_size,) if min_size is not None else scales, max_size)
    # the appendix's projection with the backbone's padding offset (cell i centred at S·i + offset)
    pooler = MultiScaleSPP(pooler_levels, body.stride, target_area, projection_offset(body))
    head, head_dim = body.box_head(pooler.output_dim(body.out_channels))
    if resolve_fc6_init(fc6_init, body, pooler_levels, pretrained_backbone) == "imagenet":
        init_fc6_from_backbone(head, body, pooler_levels)
    sampling = resolve(roi, SPP_NET_ROI, "roi")
    predictor = build_predictor(head_dim, num_classes, sampling, resolve(test, PAPER_TEST, "test"))
    proposer_module = PrecomputedProposals(proposal_min_size, max_proposals)
    transform = build_transform("none", size_divisible=body.stride)
    if classifier == "softmax":
        roi_head = RoIHead(pooler, head, predictor, sampling)
        model = TwoStageDetector(pyramid, proposer_module, roi_head, transform, loss_weights=loss_weights,
                                 proposal_params=params)
    elif classifier == "svm":
        from visiontasks.detection.rcnn.head import RCNNHead
        from visiontasks.detection.rcnn.model import RCNN

        roi_head = RCNNHead(pooler, head, predictor, head_dim, pooler.output_dim(body.out_channels), sampling)
        # the boxes are regressed by the fitted ridge regressors, so fine-tuning trains the classifier only (as R-CNN)
        model = RCNN(pyramid, proposer_module, roi_head, transform,
                     loss_weights={"loss_box_reg": 0.0, **(loss_weights or {})}, proposal_params=params,
                     fit_params=resolve(fit_params, SPP_NET_FIT, "fit_params").as_dict(),
                     feature_precision=feature_precision)
    else:
        raise ValueError(f"classifier must be 'svm' or 'softmax', got {classifier!r}")
    return compress_fc(model, fc_svd_ranks) if fc_svd_ranks else model


#: The flat arguments before the settings were grouped (translated in older checkpoints' configs).
spp_net.renamed_keys = two_stage_renamed()
