"""Shared backbones: ``get_model("vgg16" | "resnet50" | "resnet18" | "alexnet" | "small")`` or
``build_backbone(name, pretrained, backbone_kwargs)``."""
from visiontasks.backbones.alexnet import AlexNetBackbone
from visiontasks.backbones.base import Backbone, ImageAsFeatures, freeze
from visiontasks.backbones.build import build_backbone
from visiontasks.backbones.pretrained import load_torchvision_weights, weights_cache_path
from visiontasks.backbones.resnet import ResNetC4Backbone
from visiontasks.backbones.small import SmallBackbone
from visiontasks.backbones.vgg import VGG16_POOL_INDICES, VGG16Backbone, vgg16_torchvision

__all__ = [
    "Backbone", "ImageAsFeatures", "build_backbone", "freeze", "load_torchvision_weights", "weights_cache_path",
    "VGG16Backbone", "vgg16_torchvision", "VGG16_POOL_INDICES",
    "ResNetC4Backbone", "AlexNetBackbone", "SmallBackbone",
]
