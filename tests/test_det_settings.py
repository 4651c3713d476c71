"""Each two-stage builder's matcher, sampler, test and fitting settings against the papers' values.

The values are read from the built modules (the RPN's and the RoI head's ``Matcher`` /
``BalancedSampler``, the predictor, ``model.fit_params``), not from the settings classes, so a
builder or a head that passes a setting wrongly fails here; the RoI sampling is also run on
hand-made proposals of known IoU, and the SVM stage's negatives are read off a hand-built
feature record. Each row of the table cites its source (released code of each paper).
"""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from visiontasks.config import load_config, upgrade_renamed
from visiontasks.detection.rcnn import stages
from visiontasks.detection.rcnn.features import write_features_manifest, write_image_features
from visiontasks.detection.rcnn.svm import MiningResult
from visiontasks.detection.settings import RoIHeadSettings, resolve
from visiontasks.errors import InputError
from visiontasks.registry import get_model

REPO = Path(__file__).resolve().parents[1]
PFR = "py-faster-rcnn lib/fast_rcnn/config.py"
FR = "fast-rcnn lib/fast_rcnn/config.py"
WDL = "caffe pascal_finetune window_data_param (R-CNN fine-tuning)"
SPP = "SPP_net finetuning/spp_finetune_voc.m"
RT = "rcnn rcnn_train.m"

#: (builder, attribute path on the built model, paper value, source)
PAPER = [
    # Faster R-CNN: RPN (§3.1.2-3.1.3) and its Fast R-CNN head
    ("faster_rcnn", "proposer.matcher.fg_iou_thresh", 0.7, f"{PFR} TRAIN.RPN_POSITIVE_OVERLAP"),
    ("faster_rcnn", "proposer.matcher.bg_iou_thresh", 0.3, f"{PFR} TRAIN.RPN_NEGATIVE_OVERLAP"),
    ("faster_rcnn", "proposer.sampler.batch_size_per_image", 256, f"{PFR} TRAIN.RPN_BATCHSIZE"),
    ("faster_rcnn", "proposer.sampler.positive_fraction", 0.5, f"{PFR} TRAIN.RPN_FG_FRACTION"),
    ("faster_rcnn", "proposer.pre_nms_top_n", (12000, 6000), f"{PFR} TRAIN/TEST.RPN_PRE_NMS_TOP_N"),
    ("faster_rcnn", "proposer.post_nms_top_n", (2000, 300), f"{PFR} TRAIN/TEST.RPN_POST_NMS_TOP_N"),
    ("faster_rcnn", "proposer.nms_thresh", 0.7, f"{PFR} RPN_NMS_THRESH"),
    ("faster_rcnn", "proposer.min_size", 16.0, f"{PFR} RPN_MIN_SIZE"),
    ("faster_rcnn", "proposer.allow_border", False, "py-faster-rcnn anchor_target_layer.py allowed_border = 0"),
    ("faster_rcnn", "proposer.smooth_l1_beta", 1.0 / 9, "py-faster-rcnn rpn_loss_bbox sigma 3 (beta 1/sigma^2)"),
    ("faster_rcnn", "roi_head.sampler.batch_size_per_image", 128, f"{PFR} TRAIN.BATCH_SIZE, end2end IMS_PER_BATCH 1"),
    ("faster_rcnn", "roi_head.sampler.positive_fraction", 0.25, f"{PFR} TRAIN.FG_FRACTION"),
    ("faster_rcnn", "roi_head.matcher.fg_iou_thresh", 0.5, f"{PFR} TRAIN.FG_THRESH"),
    ("faster_rcnn", "roi_head.matcher.bg_iou_thresh", 0.5, f"{PFR} TRAIN.BG_THRESH_HI"),
    ("faster_rcnn", "roi_head.matcher.bg_iou_lo", 0.1, f"{PFR} TRAIN.BG_THRESH_LO (end2end.yml: 0.0; we keep 0.1)"),
    ("faster_rcnn", "roi_head.predictor.nms_thresh", 0.3, f"{PFR} TEST.NMS"),
    ("faster_rcnn", "roi_head.predictor.score_thresh", 0.05, "py-faster-rcnn lib/fast_rcnn/test.py thresh=0.05"),
    ("faster_rcnn", "roi_head.predictor.detections_per_img", 100, "py-faster-rcnn test.py max_per_image=100"),
    ("faster_rcnn", "roi_head.predictor.smooth_l1_beta", 1.0, "Fast R-CNN eq. 3 (smooth L1, sigma 1)"),
    # Fast R-CNN (§2.3): 128 RoIs of 2 images, 25 % fg IoU >= 0.5, bg [0.1, 0.5)
    ("fast_rcnn", "roi_head.sampler.batch_size_per_image", 64, f"{FR} TRAIN.BATCH_SIZE 128 / IMS_PER_BATCH 2"),
    ("fast_rcnn", "roi_head.sampler.positive_fraction", 0.25, f"{FR} TRAIN.FG_FRACTION"),
    ("fast_rcnn", "roi_head.matcher.fg_iou_thresh", 0.5, f"{FR} TRAIN.FG_THRESH"),
    ("fast_rcnn", "roi_head.matcher.bg_iou_thresh", 0.5, f"{FR} TRAIN.BG_THRESH_HI"),
    ("fast_rcnn", "roi_head.matcher.bg_iou_lo", 0.1, f"{FR} TRAIN.BG_THRESH_LO"),
    ("fast_rcnn", "roi_head.predictor.nms_thresh", 0.3, f"{FR} TEST.NMS"),
    ("fast_rcnn", "roi_head.predictor.smooth_l1_beta", 1.0, "Fast R-CNN eq. 3"),
    # R-CNN fine-tuning (§2.3) and its SVMs / box regressors
    ("rcnn", "roi_head.sampler.batch_size_per_image", 64, f"{WDL} batch_size 128 (here 2 images x 64)"),
    ("rcnn", "roi_head.sampler.positive_fraction", 0.25, f"{WDL} fg_fraction 0.25"),
    ("rcnn", "roi_head.matcher.fg_iou_thresh", 0.5, f"{WDL} fg_threshold 0.5"),
    ("rcnn", "roi_head.matcher.bg_iou_thresh", 0.5, f"{WDL} bg_threshold 0.5"),
    ("rcnn", "roi_head.matcher.bg_iou_lo", 0.0, f"{WDL}: no lower bound"),
    ("rcnn", "roi_head.predictor.nms_thresh", 0.3, "rcnn rcnn_test.m nms(.., 0.3)"),
    ("rcnn", "fit_params.neg_iou_thresh", 0.3, f"{RT} neg_ovr_thresh 0.3"),
    ("rcnn", "fit_params.svm_C", 1e-3, f"{RT} svm_C 10^-3"),
    ("rcnn", "fit_params.svm_pos_weight", 2.0, f"{RT} pos_loss_weight 2"),
    ("rcnn", "fit_params.svm_bias_mult", 10.0, f"{RT} bias_mult 10"),
    ("rcnn", "fit_params.feat_norm", 20.0, f"{RT} feat_norm_mean 20"),
    ("rcnn", "fit_params.svm_retrain_limit", 2000, f"{RT} retrain_limit 2000"),
    ("rcnn", "fit_params.svm_hard_thresh", -1.0001, f"{RT} hard_thresh -1.0001"),
    ("rcnn", "fit_params.svm_evict_thresh", -1.2, f"{RT} evict_thresh -1.2"),
    ("rcnn", "fit_params.bbox_lambda", 1000.0, "rcnn rcnn_train_bbox_regressor.m lambda 1000"),
    ("rcnn", "fit_params.bbox_iou_thresh", 0.6, "rcnn rcnn_train_bbox_regressor.m min_overlap 0.6"),
    # SPP-net (§4.1): fc fine-tuning 25 % positives IoU >= 0.5, negatives [0.1, 0.5); R-CNN's SVM rule
    ("spp_net", "roi_head.sampler.batch_size_per_image", 128, f"{SPP} img_num_per_iter 128"),
    ("spp_net", "roi_head.sampler.positive_fraction", 0.25, f"{SPP} fg_fraction 0.25"),
    ("spp_net", "roi_head.matcher.fg_iou_thresh", 0.5, f"{SPP} fg_threshold 0.5"),
    ("spp_net", "roi_head.matcher.bg_iou_thresh", 0.5, f"{SPP} bg_threshold [0.1 0.5]"),
    ("spp_net", "roi_head.matcher.bg_iou_lo", 0.1, f"{SPP} bg_threshold [0.1 0.5]"),
    ("spp_net", "roi_head.predictor.nms_thresh", 0.3, "SPP_net spp_test.m nms 0.3"),
    ("spp_net", "fit_params.neg_iou_thresh", 0.3, "SPP_net spp_exp_train_and_test_voc.m negatives IoU < 0.3"),
    ("spp_net", "fit_params.svm_C", 1e-3, "SPP_net spp_train.m svm_C 10^-3"),
]

_BUILT: dict[str, torch.nn.Module] = {}


def _model(name: str) -> torch.nn.Module:
    if name not in _BUILT:
        torch.manual_seed(0)
        extra = {"crop_size": 32, "context_pad": 4, "backbone_kwargs": {"width": 8, "head_dim": 16}} if name == "rcnn" else {}
        _BUILT[name] = get_model(name, num_classes=3, backbone="small", **extra)
    return _BUILT[name]


def _get(model: torch.nn.Module, path: str):
    obj = model
    for part in path.split("."):
        obj = obj[part] if isinstance(obj, dict) else getattr(obj, part)
    return obj


@pytest.mark.parametrize("builder, path, value, source", PAPER, ids=[f"{b}:{p}" for b, p, _, _ in PAPER])
def test_builder_settings_are_the_papers(builder, path, value, source):
    got = _get(_model(builder), path)
    if isinstance(value, float):
        assert got == pytest.approx(value, rel=1e-9), source
    else:
        assert got == value, source


def _proposals(fg: int, ious: list[float]) -> torch.Tensor:
    """``fg`` boxes with IoU 0.8 and one box per entry of ``ious`` with that IoU, all against
    the ground truth (0, 0, 100, 100): a box (0, 0, 100, h) has IoU h / 100."""
    heights = [80.0] * fg + [100.0 * i for i in ious]
    return torch.tensor([[0.0, 0.0, 100.0, h] for h in heights])


@pytest.mark.parametrize("builder, batch, fraction, bg_lo", [
    ("faster_rcnn", 128, 0.25, 0.1), ("fast_rcnn", 64, 0.25, 0.1), ("rcnn", 64, 0.25, 0.0), ("spp_net", 128, 0.25, 0.1)])
def test_roi_sampling_on_proposals_of_known_iou(builder, batch, fraction, bg_lo):
    # 60 foreground candidates (IoU 0.8) + the GT box: more than the fraction allows; background
    # candidates at IoU 0.05 (below Fast R-CNN's 0.1), 0.12, 0.3, 0.49; 0.5 is foreground.
    head = _model(builder).roi_head
    ious = [0.05, 0.12, 0.3, 0.49, 0.5]
    props = _proposals(60, ious)
    target = {"boxes": torch.tensor([[0.0, 0.0, 100.0, 100.0]]), "labels": torch.tensor([2])}
    torch.manual_seed(0)
    rois, labels, _ = head.sample([props], [target])
    num_fg = int((labels > 0).sum())
    assert num_fg == int(batch * fraction)  # 60 + 2 candidates, capped at the fraction of the batch
    assert (labels[labels > 0] == 2).all()
    bg_heights = sorted(rois[0][labels == 0][:, 3].tolist())
    expected = [100.0 * i for i in ious[:4] if i >= bg_lo]
    assert bg_heights == pytest.approx(expected)  # every background candidate in [bg_lo, 0.5), none other


def _write_record(folder: Path) -> None:
    """A hand-built feature cache of one image, two classes. Row i's fc7 is (i + 1, 1).

    rows: 0 GT of class 1, 1 GT of class 2, then proposals whose IoU with (class 1, class 2) is
    2: (0.29, 0), 3: (0.31, 0), 4: (0.6, 0), 5: (0, 0), 6: (0.1, 0.7).
    """
    overlap = np.array([[1.0, 0.0], [0.0, 1.0], [0.29, 0.0], [0.31, 0.0], [0.6, 0.0], [0.0, 0.0], [0.1, 0.7]],
                       np.float32)
    n = len(overlap)
    record = {
        "boxes": np.tile(np.array([[0.0, 0.0, 10.0, 10.0]], np.float32), (n, 1)),
        "labels": np.array([1, 2, 0, 0, 0, 0, 0]),
        "overlap": overlap, "max_iou": overlap.max(1), "best_gt": np.array([0, 1, 0, 0, 0, -1, 1]),
        "fc7": np.stack([np.arange(1, n + 1), np.ones(n)], 1).astype(np.float16),
        "pool5": np.ones((n, 2), np.float16),
    }
    write_image_features(folder, "img", record)
    write_features_manifest(folder, {"image_ids": ["img"], "classes": ["a", "b"], "fc7_dim": 2, "pool5_dim": 2})


@pytest.mark.parametrize("builder", ["rcnn", "spp_net"])
def test_svm_negatives_are_the_rows_below_iou_0_3_of_a_hand_built_record(builder, tmp_path, monkeypatch):
    _write_record(tmp_path / "features")
    seen: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def mine(x_pos, negatives, fit, **kwargs):
        label = int(round(float(x_pos[0, 0] / x_pos[0, 1])))  # class c's positive is row c - 1: fc7 (c, 1) x scale
        seen[label] = (x_pos, np.concatenate(list(negatives)))
        return MiningResult(np.zeros(2, np.float32), 0.0, len(x_pos), 0, 0, 0, [{}])

    monkeypatch.setattr(stages, "mine_hard_negatives", mine)
    monkeypatch.setattr(stages, "install_fitted_predictor", lambda ctx: None)
    ctx = SimpleNamespace(model=SimpleNamespace(fit_params=_model(builder).fit_params), out_dir=tmp_path, resume=False)
    stages.SVMStage().run(ctx)
    rows = {c: sorted(int(round(v)) - 1 for v in (neg[:, 0] / neg[:, 1])) for c, (_, neg) in seen.items()}
    # class 1: the class-2 box (IoU 0), IoU 0.29, 0 and 0.1 — not 0.31 or 0.6 (neither positive nor negative)
    assert rows[1] == [1, 2, 5, 6]
    # class 2: every row but its own box and the proposal at IoU 0.7
    assert rows[2] == [0, 2, 3, 4, 5]
    settings = json.loads(str(np.load(stages.class_file(tmp_path / "svm", 1, "a"))["settings"]))
    assert settings["neg_iou_thresh"] == 0.3


def test_configs_override_by_name_and_old_names_are_one_line_errors(tmp_path):
    cfg = load_config(REPO / "configs/detection/fast_rcnn_small.yaml", ["model.roi.positive_fraction=0.5"])
    assert cfg["model"]["roi"] == {"batch_size_per_image": 64, "positive_fraction": 0.5}
    model = get_model("fast_rcnn", **{k: v for k, v in cfg["model"].items() if k != "name"})
    assert model.roi_head.sampler.positive_fraction == 0.5 and model.roi_head.sampler.batch_size_per_image == 64
    assert model.roi_head.matcher.bg_iou_lo == 0.1  # the rest stays the model's
    for override, key in (("model.roi_positive_fraction=0.5", "is now 'model.roi.positive_fraction'"),
                          ("model.roi.positive_fractio=0.5", "model.roi.positive_fractio"),
                          ("model.roi=0.5", "model.roi"), ("model.rpn.fg_iou_thresh=0.7", "model.rpn")):
        with pytest.raises(InputError) as err:
            load_config(REPO / "configs/detection/fast_rcnn_small.yaml", [override])
        assert key in str(err.value) and "\n" not in str(err.value)


def test_old_flat_names_in_a_saved_config_are_translated():
    old = {"task": "detection", "model": {"name": "faster_rcnn", "rpn_min_size": 4, "roi_batch_size_per_image": 32,
                                          "box_score_thresh": 0.2, "rpn": {"nms_thresh": 0.6}}}
    new = upgrade_renamed(old)["model"]
    assert new == {"name": "faster_rcnn", "rpn": {"nms_thresh": 0.6, "min_size": 4}, "roi": {"batch_size_per_image": 32},
                   "test": {"score_thresh": 0.2}}
    assert "rpn_min_size" in old["model"]  # the input is not modified
    rcnn = upgrade_renamed({"model": {"name": "rcnn", "svm_C": 0.01, "nms_thresh": 0.4}})["model"]
    assert rcnn == {"name": "rcnn", "fit_params": {"svm_C": 0.01}, "test": {"nms_thresh": 0.4}}


def test_resolve_names_the_bad_setting():
    default = RoIHeadSettings()
    assert resolve(None, default, "roi") is default
    assert resolve({"bg_iou_lo": 0.0}, default, "roi").bg_iou_lo == 0.0
    with pytest.raises(ValueError, match=r"roi\.bg_iou_lo"):
        resolve({"bg_iou_lo": 0.7}, default, "roi")  # above fg_iou_thresh
    with pytest.raises(ValueError, match=r"'roi\.bogus'"):
        resolve({"bogus": 1}, default, "roi")
    with pytest.raises(ValueError, match="batch_size_per_image"):
        RoIHeadSettings(batch_size_per_image=12.5)
