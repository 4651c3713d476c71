"""The two-stage detectors' training and test settings, each stated once with its source.

As MMDetection's ``train_cfg`` / ``test_cfg`` and Detectron2's ``from_config``: one frozen
dataclass per part, whose defaults are the paper's values, cited to the released code.

- :class:`RPNSettings` (``rpn``): anchor matching and sampling, proposal selection, box loss.
- :class:`RoIHeadSettings` (``roi``): RoI matching and sampling, box loss.
- :class:`TestSettings` (``test``): score threshold, per-class NMS, detections per image.
- :class:`FitSettings` (``fit_params``): R-CNN's SVM and box-regression stages (also SPP-net's).

Where a model's paper differs from a class default, the model's value is one named instance
below (``FAST_RCNN_ROI``, ``RCNN_ROI`` …), cited; the builders take these instances as their
defaults. A builder's ``roi=`` (``rpn=``, ``test=``, ``fit_params=``) accepts an instance, a
mapping of overrides by field name (``{"positive_fraction": 0.5}``, what a YAML config passes:
``model: {roi: {positive_fraction: 0.5}}``, or ``model.roi.positive_fraction=0.5`` on the command
line), or None (the model's values). An unknown name is one ``ValueError`` naming it.

Sources (the released code of each paper):
[fast-rcnn] rbgirshick/fast-rcnn and rbgirshick/py-faster-rcnn ``lib/fast_rcnn/config.py``
(``__C.TRAIN.BATCH_SIZE``, ``FG_FRACTION``, ``FG_THRESH``, ``BG_THRESH_HI/LO``, ``RPN_*``,
``__C.TEST.NMS``, ``__C.TEST.RPN_*``), ``lib/fast_rcnn/test.py`` ``test_net(max_per_image=100,
thresh=0.05)``, ``lib/rpn/anchor_target_layer.py`` (``allowed_border = 0``), py-faster-rcnn's
``lib/fast_rcnn/train.py`` / ``smooth_l1_loss`` sigma 3 for the RPN (beta = 1/sigma² = 1/9).
[rcnn] BVLC caffe ``examples/finetune_pascal_detection/pascal_finetune_trainval_test.prototxt``
(``window_data_param``: batch_size 128, fg_threshold 0.5, bg_threshold 0.5, fg_fraction 0.25),
rbgirshick/rcnn ``rcnn_train.m`` (svm_C 0.001, pos_loss_weight 2, bias_mult 10, feat_norm_mean 20,
neg_ovr_thresh 0.3, retrain_limit 2000, hard_thresh -1.0001, evict_thresh -1.2),
``bbox_regression/rcnn_train_bbox_regressor.m`` (lambda 1000, min_overlap 0.6), ``rcnn_test.m``
(NMS 0.3).
[spp] ShaoqingRen/SPP_net ``finetuning/spp_finetune_voc.m`` (img_num_per_iter 128, fg_fraction
0.25, fg_threshold 0.5, bg_threshold [0.1 0.5]).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, TypeVar

__all__ = [
    "LOSS_WEIGHTINGS", "RPNSettings", "RoIHeadSettings", "TestSettings", "FitSettings", "resolve",
    "FASTER_RCNN_RPN", "FASTER_RCNN_ROI", "FAST_RCNN_ROI", "RCNN_ROI", "SPP_NET_ROI", "PAPER_TEST", "RCNN_FIT",
    "two_stage_renamed", "RCNN_RENAMED",
]

_S = TypeVar("_S")

#: RPN loss normalisations: py-faster-rcnn's released code, or the paper's equation 1.
LOSS_WEIGHTINGS = ("py-faster-rcnn", "paper")


def _coerce(obj: Any) -> None:
    """Casts each field to its declared type (YAML gives 64.0 for 64 …) and checks the ranges
    named in the class's ``_UNIT`` (in [0, 1]) and ``_POSITIVE`` (> 0) tuples."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        cast = {"int": int, "float": float, "bool": bool}.get(str(f.type))
        if cast is not None:
            if isinstance(value, bool) and cast is not bool or not isinstance(value, (int, float, bool)):
                raise ValueError(f"{f.name} must be {'true or false' if cast is bool else 'a number'}, got {value!r}")
            if cast is int and float(value) != int(value):
                raise ValueError(f"{f.name} must be a whole number, got {value!r}")
            object.__setattr__(obj, f.name, cast(value))
    for name in getattr(obj, "_UNIT", ()):
        if not 0.0 <= getattr(obj, name) <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {getattr(obj, name)!r}")
    for name in getattr(obj, "_POSITIVE", ()):
        if not getattr(obj, name) > 0:
            raise ValueError(f"{name} must be positive, got {getattr(obj, name)!r}")


@dataclass(frozen=True)
class RPNSettings:
    """The Region Proposal Network's training and proposal settings (Faster R-CNN §3.1.2-3.1.3).

    Args:
        fg_iou_thresh: anchors with IoU ≥ this are positive (``RPN_POSITIVE_OVERLAP`` 0.7).
        bg_iou_thresh: anchors with IoU < this with every box are negative (``RPN_NEGATIVE_OVERLAP`` 0.3).
        batch_size_per_image: anchors sampled per image (``RPN_BATCHSIZE`` 256).
        positive_fraction: largest share of positives in that sample (``RPN_FG_FRACTION`` 0.5).
        pre_nms_top_n_train: boxes kept before the proposal NMS in training (``TRAIN.RPN_PRE_NMS_TOP_N`` 12000).
        post_nms_top_n_train: proposals kept after it in training (``TRAIN.RPN_POST_NMS_TOP_N`` 2000).
        pre_nms_top_n_test: the same at test time (``TEST.RPN_PRE_NMS_TOP_N`` 6000).
        post_nms_top_n_test: the same at test time (``TEST.RPN_POST_NMS_TOP_N`` 300).
        nms_thresh: proposal NMS IoU threshold (``RPN_NMS_THRESH`` 0.7).
        min_size: smallest proposal side in original-image pixels (``RPN_MIN_SIZE`` 16).
        allow_border: train on anchors that cross the image border (``anchor_target_layer.py``:
            ``allowed_border = 0``, i.e. no; the paper §3.3 ignores them).
        smooth_l1_beta: smooth-L1 beta of the RPN box loss (sigma 3 in py-faster-rcnn: 1/9).
        loss_weighting: "py-faster-rcnn" (both losses divided by the sampled anchors, the
            released code) or "paper" (equation 1: N_cls = 256, N_reg = anchor locations, λ);
            see ``visiontasks/detection/rpn.py``.
        loss_lambda: λ of the paper's weighting (10; unused by "py-faster-rcnn").
    """

    fg_iou_thresh: float = 0.7
    bg_iou_thresh: float = 0.3
    batch_size_per_image: int = 256
    positive_fraction: float = 0.5
    pre_nms_top_n_train: int = 12000
    post_nms_top_n_train: int = 2000
    pre_nms_top_n_test: int = 6000
    post_nms_top_n_test: int = 300
    nms_thresh: float = 0.7
    min_size: float = 16.0
    allow_border: bool = False
    smooth_l1_beta: float = 1.0 / 9
    loss_weighting: str = "py-faster-rcnn"
    loss_lambda: float = 10.0

    _UNIT = ("fg_iou_thresh", "bg_iou_thresh", "positive_fraction")
    _POSITIVE = ("batch_size_per_image", "pre_nms_top_n_train", "post_nms_top_n_train", "pre_nms_top_n_test",
                 "post_nms_top_n_test", "loss_lambda")

    def __post_init__(self) -> None:
        _coerce(self)
        if not 0.0 < self.nms_thresh <= 1.0:
            raise ValueError(f"nms_thresh must be in (0, 1], got {self.nms_thresh!r}")
        if self.min_size < 0:
            raise ValueError(f"min_size must be >= 0, got {self.min_size!r}")
        if self.bg_iou_thresh > self.fg_iou_thresh:
            raise ValueError(f"bg_iou_thresh {self.bg_iou_thresh!r} is above fg_iou_thresh {self.fg_iou_thresh!r}")
        if self.loss_weighting not in LOSS_WEIGHTINGS:
            raise ValueError(f"loss_weighting must be one of {LOSS_WEIGHTINGS}, got {self.loss_weighting!r}")


@dataclass(frozen=True)
class RoIHeadSettings:
    """RoI sampling of the detection head's training (Fast R-CNN §2.3) and its box loss.

    Foreground RoIs have IoU ≥ ``fg_iou_thresh`` with a ground-truth box (its class); background
    RoIs have IoU in [``bg_iou_lo``, ``fg_iou_thresh``) (label 0); the rest is not sampled.

    Args:
        batch_size_per_image: RoIs sampled per image (``BATCH_SIZE`` 128 per minibatch).
        positive_fraction: largest share of foreground RoIs (``FG_FRACTION`` 0.25).
        fg_iou_thresh: foreground IoU threshold (``FG_THRESH`` 0.5; ``BG_THRESH_HI`` = the same 0.5).
        bg_iou_lo: lower IoU bound of background RoIs (``BG_THRESH_LO`` 0.1).
        smooth_l1_beta: smooth-L1 beta of the box loss (Fast R-CNN eq. 3: 1).
    """

    batch_size_per_image: int = 128
    positive_fraction: float = 0.25
    fg_iou_thresh: float = 0.5
    bg_iou_lo: float = 0.1
    smooth_l1_beta: float = 1.0

    _UNIT = ("positive_fraction", "fg_iou_thresh", "bg_iou_lo")
    _POSITIVE = ("batch_size_per_image", "smooth_l1_beta")

    def __post_init__(self) -> None:
        _coerce(self)
        if self.bg_iou_lo > self.fg_iou_thresh:
            raise ValueError(f"bg_iou_lo {self.bg_iou_lo!r} is above fg_iou_thresh {self.fg_iou_thresh!r}")


@dataclass(frozen=True)
class TestSettings:
    """What the detector reports at test time.

    Args:
        score_thresh: smallest reported score (py-faster-rcnn ``test_net(thresh=0.05)``).
        nms_thresh: per-class NMS IoU threshold (``__C.TEST.NMS`` 0.3; R-CNN ``rcnn_test.m`` 0.3).
        detections_per_img: most detections per image (``test_net(max_per_image=100)``).
    """

    __test__ = False  # not a pytest test class

    score_thresh: float = 0.05
    nms_thresh: float = 0.3
    detections_per_img: int = 100

    _POSITIVE = ("detections_per_img",)

    def __post_init__(self) -> None:
        _coerce(self)
        if not 0.0 <= self.score_thresh < 1.0:
            raise ValueError(f"score_thresh must be in [0, 1), got {self.score_thresh!r}")
        if not 0.0 < self.nms_thresh <= 1.0:
            raise ValueError(f"nms_thresh must be in (0, 1], got {self.nms_thresh!r}")


@dataclass(frozen=True)
class FitSettings:
    """R-CNN's fitting stages after fine-tuning: per-class SVMs on fc7, box regressors on pool5.

    Args:
        svm_C: liblinear's C (``rcnn_train.m`` svm_C 10^-3).
        svm_pos_weight: loss weight of the positives (pos_loss_weight 2).
        svm_bias_mult: the bias feature's value (bias_mult 10).
        svm_retrain_limit: new hard negatives that trigger a retraining (retrain_limit 2000).
        svm_hard_thresh: a negative scoring above this is hard (hard_thresh -1 - 10^-4).
        svm_evict_thresh: cached easy negatives scoring below this are evicted (evict_thresh -1.2).
        feat_norm: features are scaled to this mean norm first (feat_norm_mean 20).
        neg_iou_thresh: SVM negatives have IoU below this with every box of the class (neg_ovr_thresh 0.3).
        bbox_lambda: ridge λ of the box regressors (``rcnn_train_bbox_regressor.m`` lambda 1000).
        bbox_iou_thresh: regressors train on regions with IoU above this with their best box (min_overlap 0.6).
    """

    svm_C: float = 1e-3
    svm_pos_weight: float = 2.0
    svm_bias_mult: float = 10.0
    svm_retrain_limit: int = 2000
    svm_hard_thresh: float = -1.0001
    svm_evict_thresh: float = -1.2
    feat_norm: float = 20.0
    neg_iou_thresh: float = 0.3
    bbox_lambda: float = 1000.0
    bbox_iou_thresh: float = 0.6

    _UNIT = ("neg_iou_thresh", "bbox_iou_thresh")
    _POSITIVE = ("svm_C", "svm_pos_weight", "svm_bias_mult", "feat_norm")

    def __post_init__(self) -> None:
        _coerce(self)
        if self.bbox_lambda < 0:
            raise ValueError(f"bbox_lambda must be >= 0, got {self.bbox_lambda!r}")
        if self.svm_retrain_limit < 0:
            raise ValueError(f"svm_retrain_limit must be >= 0, got {self.svm_retrain_limit!r}")

    def as_dict(self) -> dict[str, float]:
        """The settings as the plain dict the fitting stages read (``model.fit_params``)."""
        return dataclasses.asdict(self)


def resolve(value: Any, default: _S, name: str) -> _S:
    """The settings a builder uses: ``default`` updated by ``value``.

    Args:
        value: None (``default``), an instance of ``type(default)`` (itself) or a mapping of
            field names to values (overrides of ``default``).
        default: the model's settings.
        name: the builder argument (named in errors, e.g. ``"roi"``).

    Returns:
        An instance of ``type(default)``.

    Raises:
        ValueError: an unknown field or a bad value, naming ``name.field``.
    """
    if value is None:
        return default
    if isinstance(value, type(default)):
        return value
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must be a mapping of {type(default).__name__} fields, got {value!r}")
    known = [f.name for f in dataclasses.fields(default)]
    for key in value:
        if key not in known:
            raise ValueError(f"unknown setting '{name}.{key}'; {name} takes {known}")
    try:
        return dataclasses.replace(default, **value)
    except ValueError as exc:
        raise ValueError(f"{name}.{exc}") from None


#: Faster R-CNN's RPN: the class defaults (py-faster-rcnn ``config.py`` ``RPN_*``).
FASTER_RCNN_RPN = RPNSettings()
#: Fast R-CNN: 128 RoIs per minibatch of ``IMS_PER_BATCH = 2`` images, so 64 per image ([fast-rcnn]).
FAST_RCNN_ROI = RoIHeadSettings(batch_size_per_image=64)
#: Faster R-CNN: 128 RoIs of one image (py-faster-rcnn ``experiments/cfgs/faster_rcnn_end2end.yml``
#: ``IMS_PER_BATCH: 1``). That file also sets ``BG_THRESH_LO: 0.0``; we keep Fast R-CNN's 0.1.
FASTER_RCNN_ROI = RoIHeadSettings()
#: R-CNN fine-tuning: 128 windows (here 64 per image × 2), 32 foreground (IoU ≥ 0.5), background
#: every window with IoU < 0.5 — caffe's ``window_data_layer`` has no lower bound ([rcnn]).
RCNN_ROI = RoIHeadSettings(batch_size_per_image=64, bg_iou_lo=0.0)
#: SPP-net fine-tuning: 128 windows, 25 % foreground (IoU ≥ 0.5), background IoU in [0.1, 0.5) ([spp]).
SPP_NET_ROI = RoIHeadSettings(batch_size_per_image=128)
#: The test settings of all four papers.
PAPER_TEST = TestSettings()
#: R-CNN's fitting stages (SPP-net reuses them).
RCNN_FIT = FitSettings()


def two_stage_renamed(rpn: bool = False) -> dict[str, str]:
    """The flat builder arguments of the Fast/Faster R-CNN and SPP-net builders before the
    settings were grouped, and where each went (``roi_positive_fraction`` → ``roi.positive_fraction``).
    Configs saved in older checkpoints are translated with it (``visiontasks.config.upgrade``)."""
    out = {f"roi_{f}": f"roi.{f}" for f in ("batch_size_per_image", "positive_fraction", "fg_iou_thresh", "bg_iou_lo")}
    out["box_smooth_l1_beta"] = "roi.smooth_l1_beta"
    out.update({f"box_{f.name}": f"test.{f.name}" for f in dataclasses.fields(TestSettings)})
    if rpn:
        out.update({f"rpn_{f.name}": f"rpn.{f.name}" for f in dataclasses.fields(RPNSettings)})
    return out


#: R-CNN's flat builder arguments before the grouping, and where each went.
RCNN_RENAMED: dict[str, str] = {
    **{f"roi_{f}": f"roi.{f}" for f in ("batch_size_per_image", "positive_fraction", "fg_iou_thresh", "bg_iou_lo")},
    **{f.name: f"test.{f.name}" for f in dataclasses.fields(TestSettings)},
    **{f.name: f"fit_params.{f.name}" for f in dataclasses.fields(FitSettings)},
}
