"""YOLOv1 / Fast YOLO: the paper's network (parameters, FLOPs, 7×7×30), decoding, the contract, overfitting."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from visiontasks import get_model
from visiontasks.detection.base import Detector
from visiontasks.detection.yolo import DARKNET_OPTIM, YOLODecoder, YOLOLoss, YOLOv1
from visiontasks.registry import list_models, model_task


def on_meta(name, **kwargs):
    with torch.device("meta"):
        return get_model(name, **kwargs)


def convs(model):
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


# ---------------------------------------------------------------- the paper's network
def test_yolov1_is_figure_3():
    model = on_meta("yolov1")
    # Figure 3 with biases: 24 conv + FC 4096 + FC 1470 = 271,703,550 parameters
    assert sum(p.numel() for p in model.parameters()) == 271_703_550
    layers = convs(model)
    assert len(layers) == 24
    assert [c.kernel_size[0] for c in layers].count(1) == 9  # the 1×1 reduction layers
    assert [(c.kernel_size[0], c.out_channels, c.stride[0]) for c in (layers[0], layers[21])] == [(7, 64, 2),
                                                                                                   (3, 1024, 2)]
    acts = [m for m in model.modules() if isinstance(m, nn.LeakyReLU)]
    assert len(acts) == 25 and all(a.negative_slope == 0.1 for a in acts)  # 24 conv + FC1; FC2 linear
    fc = [m for m in model.head.fc if not isinstance(m, nn.Flatten)]
    assert [type(m).__name__ for m in fc] == ["Linear", "LeakyReLU", "Dropout", "Linear"]
    assert fc[0].in_features == 7 * 7 * 1024 and fc[0].out_features == 4096 and fc[2].p == 0.5
    assert fc[3].out_features == 7 * 7 * 30
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert model.backbone.stride == 64 and model.transform.size == (448, 448)
    darknet_input = get_model("fast_yolo", fc_dim=8).transform  # darknet's input: 2x - 1
    assert darknet_input.mean.flatten().tolist() == [0.5] * 3 == darknet_input.std.flatten().tolist()
    x = torch.zeros(1, 3, 448, 448, device="meta")
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        out = model.head(model.backbone(x))
    assert tuple(out.shape) == (1, 7, 7, 30)
    # 2 FLOP per multiply-add of the convs and FCs (bias, activations, pooling not counted)
    assert counter.get_total_flops() / 1e9 == pytest.approx(40.57, abs=0.01)


def test_fast_yolo_nine_convs_same_head():
    model = on_meta("fast_yolo")
    assert len(convs(model)) == 9 and model.backbone.stride == 64
    assert model.head.fc[-1].out_features == 7 * 7 * 30
    assert tuple(model.head(model.backbone(torch.zeros(1, 3, 448, 448, device="meta"))).shape) == (1, 7, 7, 30)
    with pytest.raises(ValueError, match="darknet9"):
        get_model("fast_yolo", backbone="small")


@pytest.mark.parametrize("backbone", ["vgg16", "resnet50", "small"])
def test_backbone_variant_same_head(backbone):
    model = on_meta("yolov1", backbone=backbone)
    assert model.backbone.stride == 16 and model.transform.mean is not None  # ImageNet-normalised input
    feats = model.backbone(torch.zeros(1, 3, 448, 448, device="meta"))
    assert feats.shape[-1] == 28
    assert tuple(model.head(feats).shape) == (1, 7, 7, 30)


def test_conv_head_option_same_output():
    """head="conv" (not the paper): one 3×3 + one 1×1 conv shared by all cells, same (N, S, S, 5B+C)."""
    model = get_model("yolov1", num_classes=4, backbone="small", input_size=112, head="conv", fc_dim=32)
    assert not any(isinstance(m, nn.Linear) for m in model.head.modules())
    assert sum(p.numel() for p in model.head.parameters()) == (128 * 9 + 1) * 32 + (32 + 1) * 13
    assert model.head(model.backbone(torch.rand(2, 3, 112, 112))).shape == (2, 7, 7, 13)
    with pytest.raises(ValueError, match="head kind"):
        get_model("yolov1", num_classes=4, backbone="small", head="local")


def test_registry_and_builders():
    assert {"yolov1", "fast_yolo"} <= set(list_models("detection"))
    assert model_task("darknet24") == model_task("darknet9") == "backbone"
    model = on_meta("yolov1", num_classes=4, grid_size=5, num_boxes=3, fc_dim=8, backbone="small")
    assert isinstance(model, Detector) and model.optim_defaults == DARKNET_OPTIM
    assert model.head.fc[-1].out_features == 5 * 5 * (5 * 3 + 3)
    with pytest.raises(ValueError, match="no ImageNet weights"):
        get_model("yolov1", pretrained_backbone=True)
    with pytest.raises(ValueError, match="num_classes"):
        get_model("yolov1", num_classes=1, backbone="small")


def test_head_loss_decoder_must_agree():
    small = get_model("yolov1", num_classes=4, backbone="small", fc_dim=8, input_size=64)
    with pytest.raises(ValueError, match="does not match"):
        YOLOv1(small.backbone, small.head, small.transform, YOLOLoss(7, 2, 20), small.decoder)
    with pytest.raises(ValueError, match="does not match"):
        YOLOv1(small.backbone, small.head, small.transform, small.loss, YOLODecoder(3, 3))


# ---------------------------------------------------------------- decoding
class Const(nn.Module):
    def __init__(self, pred):
        super().__init__()
        self.pred = pred

    def forward(self, feats):
        return self.pred.expand(feats.shape[0], *self.pred.shape[1:])


def test_decode_hand_built_output_back_to_original_pixels():
    model = get_model("yolov1", num_classes=4, backbone="small", fc_dim=8, input_size=112).eval()
    pred = torch.zeros(1, 7, 7, 13)
    # cell row 3, col 5, predictor 1: centre ((0.5 + 5) / 7, (0.25 + 3) / 7), w = 0.4² = 0.16, h = 0.5² = 0.25
    pred[0, 3, 5, 5:10] = torch.tensor([0.5, 0.25, 0.4, 0.5, 0.9])
    pred[0, 3, 5, 10:13] = torch.tensor([0.1, 0.8, 0.3])          # Pr(class | object)
    # the same cell, predictor 0: the same size 0.04 of the image (0.28 cell) to the left → IoU 0.12 / 0.2 = 0.6
    # with the first box, confidence 0.5 → scores 0.05, 0.4, 0.15, each below its class's first-box score
    pred[0, 3, 5, 0:5] = torch.tensor([0.5 - 0.28, 0.25, 0.4, 0.5, 0.5])
    # cell row 0, col 0, predictor 0: overflows the top-left corner → clipped
    pred[0, 0, 0, 0:5] = torch.tensor([0.0, 0.0, 0.5, 0.5, 1.0])
    pred[0, 0, 0, 10:13] = torch.tensor([0.0, 0.0, 0.6])
    model.head = Const(pred)
    h, w = 200, 300  # a non-square original, warped to 112 × 112
    out = model([torch.rand(3, h, w)])[0]
    cx, cy = 5.5 / 7, 3.25 / 7
    first = torch.tensor([(cx - 0.08) * w, (cy - 0.125) * h, (cx + 0.08) * w, (cy + 0.125) * h])
    corner = torch.tensor([0.0, 0.0, 0.125 * w, 0.125 * h])
    # scores: 0.9 × 0.8 = 0.72 (label 2); the same box as label 3 (0.27) and label 1 (0.09): per-class NMS
    # keeps them; the corner box 1.0 × 0.6 (label 3); the overlapping box (0.4, 0.15, 0.05) is suppressed
    assert out["scores"].tolist() == pytest.approx([0.72, 0.6, 0.27, 0.09])
    assert out["labels"].tolist() == [2, 3, 3, 1] and out["labels"].dtype == torch.int64
    torch.testing.assert_close(out["boxes"][0], first, atol=1e-3, rtol=0)
    torch.testing.assert_close(out["boxes"][1], corner, atol=1e-3, rtol=0)
    torch.testing.assert_close(out["boxes"][2], first, atol=1e-3, rtol=0)
    # the threshold: above it only
    model.score_thresh = 0.5
    assert model([torch.rand(3, h, w)])[0]["scores"].tolist() == pytest.approx([0.72, 0.6])
    model.decoder.nms_thresh = 0.7  # now the 0.4 box survives its IoU-0.6 neighbour (above 0.5: not shown)
    assert model([torch.rand(3, h, w)])[0]["scores"].tolist() == pytest.approx([0.72, 0.6])
    model.score_thresh = 0.3
    assert model([torch.rand(3, h, w)])[0]["scores"].tolist() == pytest.approx([0.72, 0.6, 0.4])


# ---------------------------------------------------------------- the contract
def small_model(**kw):
    torch.manual_seed(0)
    return get_model("yolov1", num_classes=4, backbone="small", input_size=112, fc_dim=64, **kw)


def test_trains_on_an_empty_image_and_drops_difficult():
    model = small_model(dropout=0.0)
    images = [torch.rand(3, 90, 120)]
    empty = model(images, [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}])
    assert set(empty) == {"loss_xy", "loss_wh", "loss_obj", "loss_noobj", "loss_class"}
    assert empty["loss_noobj"] > 0 and all(empty[k] == 0 for k in ("loss_xy", "loss_wh", "loss_obj", "loss_class"))
    sum(empty.values()).backward()
    assert all(p.grad is not None for p in model.head.parameters())
    difficult = model(images, [{"boxes": torch.tensor([[10.0, 20, 60, 70]]), "labels": torch.tensor([2]),
                                "difficult": torch.tensor([True])}])
    for k in empty:
        assert difficult[k].item() == pytest.approx(empty[k].item())


def test_eval_output_contract():
    model = small_model(score_thresh=0.0).eval()
    images = [torch.rand(3, 90, 120), torch.rand(3, 100, 80)]
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2
    for o, img in zip(out, images):
        assert set(o) == {"boxes", "labels", "scores"} and len(o["boxes"]) > 0
        assert o["labels"].dtype == torch.int64 and o["labels"].min() >= 1 and o["labels"].max() <= 3
        h, w = img.shape[-2:]
        assert (o["boxes"] >= 0).all() and (o["boxes"][:, [0, 2]] <= w).all() and (o["boxes"][:, [1, 3]] <= h).all()
        assert (o["scores"][:-1] >= o["scores"][1:]).all()
    with pytest.raises(ValueError, match="no proposals"):
        model(images, proposals=[torch.zeros(1, 4)] * 2)


def test_overfits_a_few_images():
    """The small-backbone variant fits 3 synthetic images: the loss falls > 20× and the boxes come back."""
    torch.manual_seed(0)
    model = small_model(dropout=0.0, backbone_kwargs={"width": 8})
    images, targets = [], []
    for k, (box, label) in enumerate([([10, 12, 50, 60], 1), ([60, 30, 100, 90], 2), ([20, 50, 90, 100], 3)]):
        img = torch.full((3, 112, 112), 0.2) + 0.05 * torch.rand(3, 112, 112)
        x0, y0, x1, y1 = box
        img[(k % 3), y0:y1, x0:x1] = 0.9
        images.append(img)
        targets.append({"boxes": torch.tensor([box], dtype=torch.float32), "labels": torch.tensor([label])})
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # ~0.08 s per step; two threads on two busy shared cores can be 20x slower
    try:
        for _ in range(100):
            loss = sum(model(images, targets).values())
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    finally:
        torch.set_num_threads(threads)
    assert losses[-1] < losses[0] / 20
    model.eval()
    with torch.no_grad():
        out = model(images)
    from torchvision.ops import box_iou
    for o, t in zip(out, targets):
        assert o["labels"][0] == t["labels"][0]
        assert box_iou(o["boxes"][:1], t["boxes"]).item() > 0.5
