"""R-CNN's region CNN, its feature cache and SPP-net's conv5 on the bf16 / channels-last path.

Two kinds of checks, on tiny random models (the small backbone):

- fp32 is unchanged: each fp32 output equals, bit for bit, what the code computed before the bf16
  path existed (written out here from its parts: warp → body → pool5 → fc6/fc7, the SVM formulas);
- bf16 stays within a stated tolerance of fp32 on the same inputs. bf16 keeps 8 significant bits
  (relative rounding 2⁻⁹ ≈ 0.2 % per value), and the small backbone stacks 8 convolutions and 2 FC
  layers, so the tolerances are: features' cosine similarity ≥ 0.99 per region and max abs
  difference ≤ 5 % of the largest fp32 value; detection scores within 0.02; SVM margins computed
  from the same fc7 exactly equal (the SVMs run in fp32 under autocast).
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from visiontasks import get_model
from visiontasks.api import Predictor
from visiontasks.detection.rcnn.predictor import SVMBoxPredictor
from visiontasks.detection.rcnn.warp import autocast_input, rois_with_index
from visiontasks.precision import cpu_bf16_supported

needs_bf16 = pytest.mark.skipif(not cpu_bf16_supported(), reason="this CPU has no native bf16 (fp32 fallback)")
CLASSES = ["circle", "square", "triangle"]
COS_MIN, REL_MAX, SCORE_TOL = 0.99, 0.05, 0.02


def _rcnn(**kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return get_model("rcnn", num_classes=4, backbone="small", backbone_kwargs={"width": 16, "head_dim": 256},
                     crop_size=64, context_pad=4, chunk_size=8, **kw).eval()


def _image_and_boxes() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    image = torch.rand(3, 96, 120, generator=g)
    x0 = torch.rand(24, generator=g) * 80
    y0 = torch.rand(24, generator=g) * 60
    boxes = torch.stack((x0, y0, x0 + 12 + torch.rand(24, generator=g) * 28,
                         y0 + 12 + torch.rand(24, generator=g) * 24), dim=1)
    return image, boxes


def _close(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """(smallest per-row cosine similarity, max abs difference / max |b|) of (N, ...) tensors."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    cos = F.cosine_similarity(a, b, dim=1, eps=1e-12)
    return float(cos.min()), float((a - b).abs().max() / b.abs().max())


def _fitted(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with a random (seeded) SVM/box-regression predictor installed, as after the fits."""
    head = model.roi_head
    pred = head.make_svm_predictor()
    g = torch.Generator().manual_seed(2)
    for c in range(1, 4):
        pred.set_svm(c, torch.randn(head.fc7_dim, generator=g) * 0.1, 0.0, 1.0)
        pred.set_box_regressor(c, torch.randn(4, head.pool5_dim, generator=g) * 1e-3, torch.zeros(4), 1.0)
    head.set_predictor(pred)
    return model


def test_autocast_input_is_bf16_channels_last_under_autocast_and_untouched_without():
    x = torch.rand(2, 3, 8, 8)
    assert autocast_input(x) is x
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = autocast_input(x)
    assert y.dtype == torch.bfloat16 and y.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(y.float(), x.bfloat16().float())


def test_fp32_region_features_equal_warp_body_pool_head_written_out():
    model = _rcnn()
    image, boxes = _image_and_boxes()
    head = model.roi_head
    batch, _ = model.transform([image])
    size = [tuple(image.shape[-2:])]
    with torch.no_grad():
        got = list(head.region_features(batch.tensors, [boxes], size))
        rois = rois_with_index([boxes])
        for i, (fc7, pool5) in enumerate(got):  # the chunks of 8 regions, computed as before
            crops = head.pooler.warp(batch.tensors, rois[8 * i:8 * (i + 1)], size)
            want5 = F.adaptive_max_pool2d(head.pooler.body(crops), head.pooler.output_size)
            assert torch.equal(pool5, want5)
            assert torch.equal(fc7, head.box_head(want5))


def test_fp32_extract_is_the_region_features_of_gt_then_proposals():
    model = _rcnn()
    image, boxes = _image_and_boxes()
    gt = boxes[:3]
    out_boxes, fc7, pool5 = model.extract(image, gt, boxes[3:])
    batch, _ = model.transform([image])
    with torch.no_grad():
        ref = list(model.roi_head.region_features(batch.tensors, [out_boxes], [tuple(image.shape[-2:])]))
    assert (fc7 == torch.cat([f for f, _ in ref]).numpy().astype("float16")).all()
    assert (pool5 == torch.cat([p.flatten(1) for _, p in ref]).numpy().astype("float16")).all()
    assert torch.equal(out_boxes[:3], gt)


def test_svm_predictor_computes_in_fp32_also_under_autocast():
    pred = SVMBoxPredictor(fc7_dim=32, pool5_dim=48, num_classes=3)
    g = torch.Generator().manual_seed(0)
    for c in (1, 2):
        pred.set_svm(c, torch.randn(32, generator=g), 0.3, 0.7)
        pred.set_box_regressor(c, torch.randn(4, 48, generator=g) * 0.01, torch.randn(4, generator=g), 0.5)
    fc7, pool5 = torch.rand(10, 32, generator=g), torch.rand(10, 48, generator=g)
    margins = (fc7 * 0.7) @ pred.svm_weight.t() + pred.svm_bias  # the formula, fp32
    m32, d32 = pred(fc7, pool5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        m16, d16 = pred(fc7, pool5)
    assert torch.equal(m32, margins)
    assert m16.dtype == torch.float32 and torch.equal(m16, m32) and torch.equal(d16, d32)


def test_feature_precision_is_checked_at_build_time():
    with pytest.raises(ValueError, match="precision must be one of"):
        _rcnn(feature_precision="int4")
    with pytest.raises(ValueError, match="precision must be one of"):
        get_model("spp_net", num_classes=3, backbone="small", scales=[64], feature_precision="fp16")


@needs_bf16
def test_bf16_feature_cache_is_within_tolerance_of_fp32():
    model = _rcnn()
    image, boxes = _image_and_boxes()
    b32, fc7_32, pool5_32 = model.extract(image, boxes[:2], boxes[2:])
    model.feature_precision = "bf16"
    b16, fc7_16, pool5_16 = model.extract(image, boxes[:2], boxes[2:])
    assert torch.equal(b16, b32) and fc7_16.dtype == fc7_32.dtype == "float16"
    for got, want in ((fc7_16, fc7_32), (pool5_16, pool5_32)):
        cos, rel = _close(torch.from_numpy(got).float(), torch.from_numpy(want).float())
        assert cos >= COS_MIN and rel <= REL_MAX, (cos, rel)


@needs_bf16
def test_bf16_predict_scores_are_within_tolerance_of_fp32():
    model = _fitted(_rcnn())
    image, boxes = _image_and_boxes()
    p32 = Predictor(copy.deepcopy(model), "detection", CLASSES, preset="evaluate")
    p16 = Predictor(copy.deepcopy(model), "detection", CLASSES, preset="evaluate", precision="bf16")
    p32.score_thresh = p16.score_thresh = 0.0
    for p in (p32, p16):
        p.model.roi_head.predictor.detections_per_img = 1000
        p.model.roi_head.predictor.nms_thresh = 1.0  # every region and class, so rows pair up
    r32, r16 = p32.predict(image, proposals=boxes), p16.predict(image, proposals=boxes)
    assert len(r32.scores) == len(r16.scores) == 24 * 3
    for c in (1, 2, 3):  # sorting moves no value more than the largest paired difference
        s32 = torch.sort(r32.scores[r32.labels == c]).values
        s16 = torch.sort(r16.scores[r16.labels == c]).values
        assert float((s32 - s16).abs().max()) <= SCORE_TOL
    # the regions' fc7 behind those scores
    h32, h16 = p32.model.roi_head, p16.model.roi_head
    batch, _ = p32.model.transform([image])
    with torch.inference_mode():
        f32 = torch.cat([f for f, _ in h32.region_features(batch.tensors, [boxes], [(96, 120)])])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            f16 = torch.cat([f for f, _ in h16.region_features(batch.tensors, [boxes], [(96, 120)])])
    cos, rel = _close(f16.float(), f32)
    assert cos >= COS_MIN and rel <= REL_MAX, (cos, rel)


@needs_bf16
def test_bf16_spp_net_conv5_and_pooled_features_are_within_tolerance_of_fp32():
    torch.manual_seed(0)
    model = get_model("spp_net", num_classes=4, backbone="small", scales=[64, 96], max_size=200).eval()
    image, boxes = _image_and_boxes()
    batch, _ = model.transform([image])
    with torch.no_grad():
        f32 = model.backbone(batch)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            f16 = model.backbone(batch)
            assert f16.maps[0].dtype == torch.bfloat16
            pooled16 = model.roi_head.pooler(f16, [boxes], batch.image_sizes)
        pooled32 = model.roi_head.pooler(f32, [boxes], batch.image_sizes)
    for a, b in zip(f16.maps, f32.maps):
        cos, rel = _close(a.float(), b)
        assert cos >= COS_MIN and rel <= REL_MAX, (cos, rel)
    cos, rel = _close(pooled16.float(), pooled32)
    assert cos >= COS_MIN and rel <= REL_MAX, (cos, rel)
    b32, fc7_32, _ = model.extract(image, boxes[:2], boxes[2:])
    model.feature_precision = "bf16"
    b16, fc7_16, _ = model.extract(image, boxes[:2], boxes[2:])
    assert torch.equal(b16, b32)
    cos, rel = _close(torch.from_numpy(fc7_16).float(), torch.from_numpy(fc7_32).float())
    assert cos >= COS_MIN and rel <= REL_MAX, (cos, rel)
