"""Building a registered backbone by name: what every detector and classifier builder calls.

Shape shorthand: none (construction only).
"""
from __future__ import annotations

from typing import Any

from visiontasks.backbones.base import Backbone
from visiontasks.registry import get_model, model_task

__all__ = ["build_backbone"]


def build_backbone(name: str, pretrained: bool = False, backbone_kwargs: dict[str, Any] | None = None) -> Backbone:
    """A registered backbone by name (``pretrained`` loads ImageNet weights from the local cache).

    Args:
        name: a name registered with ``task="backbone"`` ("vgg16", "resnet50", "alexnet", "small", "darknet24" …).
        pretrained: load the backbone's ImageNet weights (offline, from the hub cache).
        backbone_kwargs: extra keyword arguments of the backbone's builder (e.g. ``frozen_stages``).

    Returns:
        The backbone.

    Raises:
        ValueError: ``name`` is not registered, or is not a backbone.
    """
    if model_task(name) != "backbone":
        raise ValueError(f"{name!r} is not a backbone")
    return get_model(name, pretrained=pretrained, **(backbone_kwargs or {}))
