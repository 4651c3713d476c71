"""Faster R-CNN end to end (small backbone, tiny images) and the VGG16 parameter count."""
from __future__ import annotations

import math

import pytest
import torch

from visiontasks import get_model, list_models
from visiontasks.detection import (FastRCNNPredictor, PrecomputedProposals, RoIAlign, RoIHead, RoIPool, TwoStageDetector,
                                   build_pooler)
from visiontasks.backbones import SmallBackbone

SMALL = dict(num_classes=3, backbone="small", backbone_kwargs={"width": 16, "head_dim": 64}, min_size=128,
             max_size=160, anchor_sizes=[32, 64], rpn=dict(min_size=4, pre_nms_top_n_train=300,
             post_nms_top_n_train=100, pre_nms_top_n_test=300, post_nms_top_n_test=50))


def _model(**kwargs):
    torch.manual_seed(0)
    return get_model("faster_rcnn", **{**SMALL, **kwargs})


def _batch():
    g = torch.Generator().manual_seed(1)
    images = [torch.rand(3, 120, 150, generator=g), torch.rand(3, 96, 128, generator=g)]
    images[0][:, 20:80, 10:60] = torch.tensor([0.9, 0.1, 0.1])[:, None, None]
    images[1][:, 30:90, 40:110] = torch.tensor([0.1, 0.1, 0.9])[:, None, None]
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 60.0, 80.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.tensor([[40.0, 30.0, 110.0, 90.0]]), "labels": torch.tensor([2])}]
    return images, targets


def _empty_target():
    return {"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.int64)}


def test_registered():
    assert "faster_rcnn" in list_models("detection")


def test_loss_decreases_when_overfitting_two_images():
    model = _model().train()
    images, targets = _batch()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.02, momentum=0.9)
    history = []
    for _ in range(12):
        losses = model(images, targets)
        assert set(losses) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}
        total = sum(losses.values())
        assert all(math.isfinite(v.item()) for v in losses.values())
        opt.zero_grad()
        total.backward()
        opt.step()
        history.append(total.item())
    assert sum(history[-3:]) / 3 < 0.7 * sum(history[:3]) / 3, history


def test_empty_images_train():
    model = _model().train()
    images, targets = _batch()
    losses = model(images, [_empty_target(), _empty_target()])
    assert losses["loss_box_reg"].item() == 0.0 and losses["loss_rpn_box_reg"].item() == 0.0
    assert losses["loss_classifier"].item() > 0 and losses["loss_objectness"].item() > 0
    sum(losses.values()).backward()
    model.zero_grad()
    losses = model(images, [targets[0], _empty_target()])  # mixed batch
    assert all(math.isfinite(v.item()) for v in losses.values())
    sum(losses.values()).backward()
    assert model.roi_head.predictor.cls_score.weight.grad.abs().sum() > 0


def test_eval_output_format():
    model = _model(test=dict(score_thresh=0.0, detections_per_img=20)).eval()
    images, _ = _batch()
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2
    for det, img in zip(out, images):
        assert set(det) == {"boxes", "labels", "scores"}
        n = det["boxes"].shape[0]
        assert 0 < n <= 20 and det["labels"].shape == (n,) and det["scores"].shape == (n,)
        assert det["labels"].dtype == torch.int64 and det["boxes"].dtype == torch.float32
        assert ((det["labels"] >= 1) & (det["labels"] <= 2)).all()
        h, w = img.shape[-2:]
        b = det["boxes"]  # original-image pixels: inside the 150×120 / 128×96 images
        assert (b[:, :2] >= 0).all() and (b[:, 2] <= w + 1e-3).all() and (b[:, 3] <= h + 1e-3).all()
        assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
        assert (det["scores"][:-1] >= det["scores"][1:]).all()


def test_autocast_bfloat16_runs():
    model = _model()
    images, targets = _batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = model.train()(images, targets)
        assert all(v.dtype == torch.float32 and math.isfinite(v.item()) for v in losses.values())
        with torch.no_grad():
            out = model.eval()(images)
    assert out[0]["boxes"].dtype == torch.float32


def _fast_rcnn():
    torch.manual_seed(0)
    body = SmallBackbone(width=16, head_dim=64)
    head, dim = body.box_head()
    roi_head = RoIHead(RoIPool(7, 1 / 16), head, FastRCNNPredictor(dim, 3))
    model = TwoStageDetector(body, PrecomputedProposals(), roi_head)
    model.transform.min_size, model.transform.max_size = (240,), 400
    return model


def test_precomputed_proposals_path():
    model = _fast_rcnn()
    images, targets = _batch()
    proposals = [torch.tensor([[10.0, 20.0, 60.0, 80.0], [0.0, 0.0, 30.0, 30.0], [-20.0, 5.0, 500.0, 50.0]]),
                 torch.tensor([[40.0, 30.0, 100.0, 90.0]])]
    seen = {}
    model.roi_head.register_forward_pre_hook(lambda mod, args: seen.update(props=args[1], sizes=args[2]))
    model.proposer.register_forward_pre_hook(lambda mod, args: seen.update(scales=args[4]))
    losses = model.train()(images, targets, proposals=proposals)
    assert set(losses) == {"loss_classifier", "loss_box_reg"}
    sum(losses.values()).backward()
    # image 0 (120×150) is resized by 2 to 240×300: proposals scaled, then clipped to the input
    assert seen["sizes"] == [(240, 300), (240, 320)]
    # input pixels per original pixel: 240/120 and min(240/96, 400/128) = 2.5
    assert seen["scales"] == pytest.approx([2.0, 2.5])
    torch.testing.assert_close(seen["props"][0], torch.tensor([[20.0, 40.0, 120.0, 160.0], [0.0, 0.0, 60.0, 60.0],
                                                               [0.0, 10.0, 300.0, 100.0]]))
    model.eval()
    with torch.no_grad():
        out = model(images, proposals=proposals)
    assert len(out) == 2 and all(set(d) == {"boxes", "labels", "scores"} for d in out)
    with pytest.raises(ValueError, match="needs proposals"):
        model(images)


def test_precomputed_proposals_filters():
    from torchvision.models.detection.image_list import ImageList

    prop = PrecomputedProposals(min_size=10, max_proposals=2)
    boxes = torch.tensor([[0.0, 0.0, 30.0, 30.0], [0.0, 0.0, 15.0, 40.0], [5.0, 5.0, 5.0, 50.0], [0, 0, 50, 50]])
    out, losses = prop(ImageList(torch.zeros(1, 3, 40, 40), [(40, 40)]), torch.zeros(1, 1, 3, 3), None, [boxes], [2.0])
    # min side 10 original px = 20 input px: box 1 (15 wide) and box 2 (empty) go; cap 2; clipped to 40
    torch.testing.assert_close(out[0], torch.tensor([[0.0, 0.0, 30.0, 30.0], [0.0, 0.0, 40.0, 40.0]]))
    assert losses == {}


def test_roi_align_option():
    model = _model(pooler="roi_align")
    assert isinstance(model.roi_head.pooler, RoIAlign)
    assert isinstance(_model().roi_head.pooler, RoIPool)
    feats = torch.randn(1, 4, 8, 8)
    boxes = [torch.tensor([[3.0, 5.0, 70.0, 90.0]])]
    from torchvision.ops import roi_align

    expected = roi_align(feats, boxes, 7, 1 / 16, sampling_ratio=2, aligned=True)
    torch.testing.assert_close(model.roi_head.pooler(feats, boxes, [(128, 128)]), expected)
    images, targets = _batch()
    losses = model.train()(images, targets)
    assert all(math.isfinite(v.item()) for v in losses.values())
    with pytest.raises(ValueError, match="pooler"):
        build_pooler("banana", 7, 1 / 16)


def test_input_errors():
    model = _model().train()
    images, targets = _batch()
    with pytest.raises(ValueError, match="targets"):
        model(images)
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        model([torch.rand(1, 3, 32, 32)], targets[:1])
    with pytest.raises(ValueError, match="boxes"):
        model(images, [{"labels": torch.tensor([1])}] * 2)
    with pytest.raises(ValueError, match="rpn_objectness|objectness"):
        _model(rpn_objectness="tanh")


def test_vgg16_parameter_count_is_the_papers():
    model = get_model("faster_rcnn", num_classes=21, backbone="vgg16")

    def conv(cin, cout, k=3):
        return k * k * cin * cout + cout

    vgg_convs = (conv(3, 64) + conv(64, 64) + conv(64, 128) + conv(128, 128) + conv(128, 256) + 2 * conv(256, 256)
                 + conv(256, 512) + 2 * conv(512, 512) + 3 * conv(512, 512))
    a = 9
    rpn = conv(512, 512) + conv(512, 2 * a, 1) + conv(512, 4 * a, 1)  # 2k softmax scores, 4k deltas
    fc6, fc7 = 512 * 7 * 7 * 4096 + 4096, 4096 * 4096 + 4096
    cls, reg = 4096 * 21 + 21, 4096 * 84 + 84
    expected = vgg_convs + rpn + fc6 + fc7 + cls + reg
    assert vgg_convs == 14_714_688
    assert sum(p.numel() for p in model.parameters()) == expected  # 137,078,239
    # frozen conv1_1 … conv2_2 (Fast R-CNN §4.5) still count, but do not train
    frozen = conv(3, 64) + conv(64, 64) + conv(64, 128) + conv(128, 128)
    assert sum(p.numel() for p in model.parameters() if not p.requires_grad) == frozen
    sigmoid = get_model("faster_rcnn", num_classes=21, backbone="vgg16", rpn_objectness="sigmoid")
    assert sum(p.numel() for p in sigmoid.parameters()) == expected - conv(512, a, 1)


def test_degenerate_ground_truth_box_gives_finite_losses():
    # a zero-width box (a 1-px-wide VOC box becomes x0 == x1 in 0-based coordinates) is never matched
    model = _model().train()
    images, targets = _batch()
    targets[0] = {"boxes": torch.tensor([[10.0, 20.0, 10.0, 80.0], [10.0, 20.0, 60.0, 80.0]]),
                  "labels": torch.tensor([1, 2])}
    losses = model(images, targets)
    assert all(math.isfinite(v.item()) for v in losses.values())


def test_yaml_style_list_arguments():
    # configs pass lists: multi-scale training sizes (one drawn per image, the last used at test)
    model = _model(min_size=[112, 128], anchor_sizes=[32, 64], aspect_ratios=[0.5, 1.0, 2.0])
    assert model.transform.min_size == (112, 128)
    assert model.proposer.anchor_generator.num_anchors == 6
    images, targets = _batch()
    losses = model.train()(images, targets)
    assert all(math.isfinite(v.item()) for v in losses.values())


def test_difficult_objects_are_not_trained_on():
    from visiontasks.detection.base import drop_difficult as _drop_difficult

    target = {"boxes": torch.tensor([[0.0, 0, 10, 10], [5, 5, 20, 20]]), "labels": torch.tensor([1, 2]),
              "difficult": torch.tensor([False, True])}
    kept = _drop_difficult(target)
    assert kept["labels"].tolist() == [1] and kept["boxes"].shape == (1, 4)
    assert _drop_difficult({**target, "difficult": torch.tensor([False, False])})["labels"].tolist() == [1, 2]
