"""SPP-net's fc6 starts from the backbone's fc6 on its pyramid level, zeros on the others."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torchvision

from visiontasks.backbones import build_backbone
from visiontasks.detection import SpatialPyramidPool, SpatialPyramidPooling2d
from visiontasks.detection.spp_net.fc6_init import init_fc6_from_backbone, resolve_fc6_init
from visiontasks.errors import InputError

LEVELS = (6, 3, 2, 1)


class _Toy(nn.Module):
    """A one-channel backbone whose fc6 reads a 2×2 grid: weights 1, 2, 3, 4, bias 0.5."""

    out_channels, pool_size, stride = 1, 2, 16

    def box_head(self, in_features=None):
        fc6 = nn.Linear(4 if in_features is None else in_features, 1)
        if in_features is None:
            with torch.no_grad():
                fc6.weight.copy_(torch.tensor([[1.0, 2.0, 3.0, 4.0]]))
                fc6.bias.fill_(0.5)
        return nn.Sequential(nn.Flatten(1), fc6), 1


def test_fc6_columns_by_hand():
    toy = _Toy()
    head, _ = toy.box_head(5)
    fc6 = init_fc6_from_backbone(head, toy, (2, 1))
    assert fc6.weight.tolist() == [[1.0, 2.0, 3.0, 4.0, 0.0]] and fc6.bias.tolist() == [0.5]
    # map [[1, 0], [0, 2]]: level 2 = (1, 0, 0, 2), level 1 = (2); fc6 = 1·1 + 4·2 + 0·2 + 0.5 = 9.5
    pooled = SpatialPyramidPooling2d((2, 1))(torch.tensor([[[[1.0, 0.0], [0.0, 2.0]]]]))
    assert head(pooled).item() == 9.5
    # the level order decides where the copied columns go
    head, _ = toy.box_head(5)
    assert init_fc6_from_backbone(head, toy, (1, 2)).weight.tolist() == [[0.0, 1.0, 2.0, 3.0, 4.0]]


def test_spp_fc6_on_a_6x6_conv5_map_equals_alexnets_fc6():
    torch.manual_seed(0)
    backbone = build_backbone("alexnet", False, None)
    head, _ = backbone.box_head(256 * 50)
    init_fc6_from_backbone(head, backbone, LEVELS)
    spp_fc6 = next(m for m in head.modules() if isinstance(m, nn.Linear))
    assert spp_fc6.in_features == 12800 and not spp_fc6.weight[:, 9216:].any()
    # torchvision's own path into classifier[1]: avgpool (identity on 6×6) and flatten, fc6 copied from the backbone
    net = torchvision.models.alexnet(weights=None).eval()
    native = next(m for m in backbone.box_head()[0].modules() if isinstance(m, nn.Linear))
    net.classifier[1].load_state_dict(native.state_dict())
    conv5 = torch.rand(2, 256, 6, 6)
    expected = net.classifier[1](torch.flatten(net.avgpool(conv5), 1))
    torch.testing.assert_close(spp_fc6(SpatialPyramidPooling2d(LEVELS)(conv5)), expected)
    # the detection pooler on a window covering the 6×6 map (cells 0 … 5) gives the same vector
    window = [torch.tensor([[-16.0, -16.0, 96.0, 96.0]])] * 2
    pooled = SpatialPyramidPool(LEVELS, 1 / 16)(conv5, [window[0], window[1]])
    torch.testing.assert_close(spp_fc6(pooled), expected)
    # fc7 is the backbone's too: the whole head (eval: no dropout) equals the native head on the 6×6 map
    native_head = backbone.box_head()[0].eval()
    torch.testing.assert_close(head.eval()(pooled), native_head(conv5))


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and text.startswith("fc6_init: ")
    return text


def test_backbones_without_a_fitting_imagenet_fc6_are_refused_in_one_line():
    alexnet = build_backbone("alexnet", False, None)
    with pytest.raises(InputError) as exc:
        resolve_fc6_init("imagenet", alexnet, LEVELS, pretrained=False)
    assert "ImageNet weights" in _one_line(exc)
    with pytest.raises(InputError) as exc:  # small: a 7×7 fc6 of its own, no ImageNet weights either way
        resolve_fc6_init("imagenet", build_backbone("small", False, None), LEVELS, pretrained=True)
    assert "7x7" in _one_line(exc)
    with pytest.raises(InputError) as exc:  # VGG16's fc6 reads 512×7×7: no level of {6, 3, 2, 1}
        resolve_fc6_init("imagenet", build_backbone("vgg16", False, None), LEVELS, pretrained=True)
    assert "25088" in _one_line(exc)
    with pytest.raises(InputError) as exc:
        resolve_fc6_init("imagenat", alexnet, LEVELS, pretrained=True)
    assert "imagenat" in _one_line(exc)
    # the default falls back to random where the copy is impossible, and copies where it is
    assert resolve_fc6_init(None, alexnet, LEVELS, pretrained=False) == "random"
    assert resolve_fc6_init(None, build_backbone("vgg16", False, None), LEVELS, pretrained=True) == "random"
    assert resolve_fc6_init(None, alexnet, LEVELS, pretrained=True) == "imagenet"


def test_spp_net_builder_copies_fc6_when_the_backbone_is_pretrained(monkeypatch):
    import visiontasks.backbones.alexnet as alexnet_module
    from visiontasks.detection import spp_net

    monkeypatch.setattr(alexnet_module, "load_torchvision_weights", lambda net, weights: net)  # offline stand-in
    model = spp_net(backbone="alexnet", pretrained_backbone=True, classifier="softmax")
    fc6 = next(m for m in model.roi_head.box_head.modules() if isinstance(m, nn.Linear))
    assert fc6.in_features == 12800 and fc6.weight[:, :9216].any() and not fc6.weight[:, 9216:].any()
    random = spp_net(backbone="alexnet", pretrained_backbone=True, classifier="softmax", fc6_init="random")
    fc6 = next(m for m in random.roi_head.box_head.modules() if isinstance(m, nn.Linear))
    assert fc6.weight[:, 9216:].any()
    with pytest.raises(InputError, match="^fc6_init: "):
        spp_net(backbone="alexnet", fc6_init="imagenet")
