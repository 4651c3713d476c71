"""SPP-net's detector: scale choice by hand, the pyramid pooled at each window's scale, frozen conv."""
from __future__ import annotations

import pytest
import torch
from torchvision.models.detection.image_list import ImageList

from visiontasks import get_model
from visiontasks.backbones import SmallBackbone
from visiontasks.detection import MultiScaleSPP, ScalePyramid, SpatialPyramidPool, choose_scales


def test_each_window_takes_the_scale_closest_to_224_squared():
    # factors 1, 2, 4: a 112×112 window is 224² at factor 2; a 56×56 one at 4; a 300×300 one at 1;
    # a 160×160 one: |160² − 224²| = 24,576 at factor 1 beats |320² − 224²| = 52,224 at factor 2.
    boxes = torch.tensor([[0.0, 0.0, 112.0, 112.0], [10.0, 10.0, 66.0, 66.0], [0.0, 0.0, 300.0, 300.0],
                          [0.0, 0.0, 160.0, 160.0]])
    assert choose_scales(boxes, torch.tensor([1.0, 2.0, 4.0])).tolist() == [1, 2, 0, 0]


def test_multiscale_pooling_equals_pooling_each_window_at_its_scale():
    torch.manual_seed(0)
    body = SmallBackbone(width=8, head_dim=16).eval()
    pyramid = ScalePyramid(body, scales=(64, 128), max_size=400)
    image = torch.rand(3, 100, 150)
    batch = ImageList(torch.nn.functional.pad(image, (0, 10, 0, 12))[None], [(100, 150)])
    with torch.no_grad():
        feats = pyramid(batch)
    assert [m.shape[-2:] for m in feats.maps] == [(4, 6), (8, 12)]  # 64×96 and 128×192 inputs, stride 16
    torch.testing.assert_close(feats.factors[1], torch.tensor([1.28]))
    boxes = torch.tensor([[0.0, 0.0, 140.0, 95.0], [20.0, 30.0, 60.0, 70.0]])
    pooled = MultiScaleSPP((2, 1), stride=16)(feats, [boxes])
    spp = SpatialPyramidPool((2, 1), 1 / 16)
    # window 0: area 13300 → ×0.64² = 5448, ×1.28² = 21791: scale 1 (closer to 50176); window 1 likewise
    expected0 = spp(feats.maps[1], [boxes[:1] * 1.28])
    expected1 = spp(feats.maps[1], [boxes[1:] * 1.28])
    torch.testing.assert_close(pooled, torch.cat((expected0, expected1)))
    # with a tiny target area the small scale wins
    small = MultiScaleSPP((2, 1), stride=16, target_area=100.0)(feats, [boxes[1:]])
    torch.testing.assert_close(small, spp(feats.maps[0], [boxes[1:] * 0.64]))


def test_spp_net_fine_tunes_only_the_fully_connected_layers():
    model = get_model("spp_net", num_classes=3, backbone="small", scales=[96, 128], max_size=200)
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"roi_head"}
    assert model.roi_head.box_head[1].in_features == 128 * 50
    image = torch.rand(3, 90, 120)
    target = {"boxes": torch.tensor([[10.0, 20.0, 60.0, 70.0]]), "labels": torch.tensor([2]),
              "proposals": torch.tensor([[12.0, 18.0, 58.0, 75.0], [0.0, 0.0, 40.0, 40.0]])}
    losses = model.train()([image], [target])
    sum(losses.values()).backward()
    assert model.roi_head.box_head[1].weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        out = model([image], proposals=[target["proposals"]])
    assert out[0]["boxes"].shape[-1] == 4
    with pytest.raises(ValueError, match="scales"):
        get_model("spp_net", num_classes=3, backbone="small", scales=[])


def test_alexnet_spp_net_has_the_pyramid_fc6():
    model = get_model("spp_net", num_classes=21, backbone="alexnet")
    assert model.roi_head.box_head[1][1].in_features == 256 * 50  # 12,800 → 4096, as the paper's fc6
    assert model.roi_head.predictor.cls_score.out_features == 21


def test_spp_classifier_gives_a_fixed_length_output_for_any_image_size():
    from visiontasks import list_models

    assert "spp_alexnet" in list_models("classification")
    model = get_model("spp_alexnet", num_classes=10).eval()
    with torch.no_grad():
        for h, w in ((99, 99), (180, 224), (227, 160)):
            assert model(torch.rand(1, 3, h, w)).shape == (1, 10)
    assert model.classifier[1].in_features == 256 * 50
