"""Shared backbones: shapes, strides, freezing, offline-safe pretrained loading."""
from __future__ import annotations

import pickle

import pytest
import torch
import torchvision

import visiontasks
from visiontasks.backbones import load_torchvision_weights, weights_cache_path
from torchvision.models import AlexNet_Weights


@pytest.mark.parametrize("name", ["small", "alexnet", "resnet18", "vgg16"])
def test_feature_map_and_box_head(name):
    torch.manual_seed(0)
    bb = visiontasks.get_model(name)
    feats = bb(torch.rand(1, 3, 128, 96))
    assert feats.shape[1] == bb.out_channels
    assert feats.shape[2] == pytest.approx(128 / bb.stride, abs=1) and feats.shape[3] == pytest.approx(96 / bb.stride, abs=1)
    head, dim = bb.box_head()
    assert head(torch.rand(3, bb.out_channels, bb.pool_size, bb.pool_size)).shape == (3, dim)


def test_vgg16_freezes_conv1_conv2_as_fast_rcnn():
    bb = visiontasks.get_model("vgg16")
    convs = [m for m in bb.body if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 13
    assert [c.weight.requires_grad for c in convs] == [False] * 4 + [True] * 9
    # the box head owns fc6/fc7 once, not the backbone as well
    assert not any("fc67" in n for n, _ in bb.named_parameters())


def test_resnet_bn_frozen():
    bb = visiontasks.get_model("resnet18")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in bb.modules())
    stem_and_res2 = list(bb.body)[:2]
    assert all(not p.requires_grad for m in stem_and_res2 for p in m.parameters())
    assert all(p.requires_grad for p in bb.body[2].parameters())


def test_pretrained_offline_error(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.delenv("VISIONTASKS_ALLOW_DOWNLOAD", raising=False)
    with pytest.raises(FileNotFoundError, match="alexnet-owt"):
        visiontasks.get_model("alexnet", pretrained=True)


def test_pretrained_loads_from_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    reference = torchvision.models.alexnet()
    path = weights_cache_path(AlexNet_Weights.IMAGENET1K_V1)
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    bb = visiontasks.get_model("alexnet", pretrained=True)
    assert torch.equal(bb.body[0].weight, reference.features[0].weight)
    head, _ = bb.box_head()
    assert torch.equal(head[1][1].weight, reference.classifier[1].weight)  # fc6


class _Evil:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').touch()",))


def test_hostile_weights_file_does_not_execute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    path = weights_cache_path(AlexNet_Weights.IMAGENET1K_V1)
    path.parent.mkdir(parents=True)
    torch.save({"x": _Evil()}, path, pickle_module=pickle)
    with pytest.raises(ValueError, match="not a readable weights file"):
        load_torchvision_weights(torchvision.models.alexnet(), AlexNet_Weights.IMAGENET1K_V1)
    assert not (tmp_path / "PWNED").exists()


def test_frozen_stages_means_the_same_in_every_backbone():
    def frozen(module):
        return all(not p.requires_grad for p in module.parameters())

    def trainable(module):
        return all(p.requires_grad for p in module.parameters())

    r = visiontasks.get_model("resnet18", frozen_stages=2)  # conv1 (stem) + conv2_x
    assert frozen(r.body[0]) and frozen(r.body[1]) and trainable(r.body[2])
    assert trainable(visiontasks.get_model("resnet18", frozen_stages=1).body[1])
    v = visiontasks.get_model("vgg16", frozen_stages=2)  # conv1_x + conv2_x blocks
    convs = [m for m in v.body if isinstance(m, torch.nn.Conv2d)]
    assert all(frozen(c) for c in convs[:4]) and trainable(convs[4])
    a = visiontasks.get_model("alexnet", frozen_stages=2)  # conv1 + conv2
    convs = [m for m in a.body if isinstance(m, torch.nn.Conv2d)]
    assert frozen(convs[0]) and frozen(convs[1]) and trainable(convs[2])
