"""SPP-net's fc6 from the backbone's ImageNet fc6: the pyramid level that shares its layout.

SPP-net's fc6 reads the pooled pyramid, ``C · Σ n²`` values (levels {6, 3, 2, 1}: 256 · 50 =
12,800 for AlexNet), where the ImageNet network's fc6 reads one ``C × P × P`` grid (AlexNet:
256 · 6 · 6 = 9,216). The released SPP-net model was pre-trained on ImageNet *with* the pyramid
(He et al. 2014, §3 and §4.1: the detection net is the ImageNet-trained SPP-net whose fc layers
are then fine-tuned), so all its fc6 columns are trained. Starting from a network trained without
the pyramid (torchvision's AlexNet), only the level with n = P has trained weights. We therefore
copy the ImageNet fc6 into that level's columns and set the other levels' columns to zero, with
fc6's bias kept:

    fc6_spp(pyramid(x)) = W · level_P(x) + 0 · (other levels) + b = fc6_imagenet(level_P(x)),

so before fine-tuning the detector's fc6 (and fc7, copied unchanged) compute exactly the ImageNet
network's features on the P × P level, and fine-tuning (§4.1: fc layers only, the convolutions
frozen) learns the coarser levels' columns from zero — their inputs are non-zero, so their
gradients are. A random start for those columns (Caffe's Gaussian, std 0.01) would instead add
noise of the order of the trained response to every fc6 unit; zero is the start that keeps the
ImageNet features. The layouts agree: our pooler flattens each level channel-major (``(R, C, n,
n).flatten(1)``, ``detection/spp.py``), as torchvision's AlexNet flattens ``avgpool``'s
(B, 256, 6, 6) output into ``classifier[1]``; the P × P level's columns start after the levels
listed before it (first, for the default order 6, 3, 2, 1).

Shape shorthand: C = channels, P = the backbone's pool size, D = C · Σ n².
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from visiontasks.errors import InputError

__all__ = ["FC6_INITS", "init_fc6_from_backbone", "resolve_fc6_init", "backbone_fc6", "level_columns"]

#: ``fc6_init`` choices: the ImageNet fc6 on its level, zeros elsewhere; or a random fc6.
FC6_INITS = ("imagenet", "random")


def _first_linear(module: nn.Module) -> nn.Linear | None:
    return next((m for m in module.modules() if isinstance(m, nn.Linear)), None)


def level_columns(levels: Sequence[int], channels: int, n: int) -> slice:
    """The columns of level ``n`` in a pyramid vector of ``channels`` × ``levels``."""
    levels = [int(v) for v in levels]
    start = channels * sum(m * m for m in levels[: levels.index(int(n))])
    return slice(start, start + channels * int(n) ** 2)


def backbone_fc6(backbone: nn.Module, levels: Sequence[int], key: str = "fc6_init") -> nn.Linear:
    """The backbone's own fc6, checked to read one ``C × P × P`` grid with P among ``levels``.

    Raises:
        InputError: naming ``key``, when the backbone has no such fc6 (no ``box_head``, no linear
            layer in it, a pool size that is no pyramid level, or another input width).
    """
    name = type(backbone).__name__
    if not hasattr(backbone, "box_head"):
        raise InputError(key, f"{name} has no box head, so no ImageNet fc6 to initialise SPP-net's fc6 from")
    head, _ = backbone.box_head()
    fc6 = _first_linear(head)
    channels, pool = int(backbone.out_channels), int(getattr(backbone, "pool_size", 0))
    if fc6 is None:
        raise InputError(key, f"{name}'s box head has no fully connected fc6 to initialise SPP-net's fc6 from")
    if pool not in [int(v) for v in levels] or fc6.in_features != channels * pool * pool:
        raise InputError(key, f"{name}'s fc6 reads {fc6.in_features} = {channels}x{pool}x{pool} values, no level of "
                              f"the pyramid {tuple(levels)}; use fc6_init: random")
    return fc6


@torch.no_grad()
def init_fc6_from_backbone(head: nn.Module, backbone: nn.Module, levels: Sequence[int],
                           key: str = "fc6_init") -> nn.Linear:
    """Initialises the SPP head's fc6 from the backbone's fc6 (its level) and zeros (the others).

    Args:
        head: the SPP head (``backbone.box_head(C · Σ n²)``); its first ``nn.Linear`` is fc6.
        backbone: the backbone whose (ImageNet) fc6 is copied.
        levels: the pyramid levels, in the pooler's order.
        key: the setting named in errors.

    Returns:
        The head's fc6, changed in place.

    Raises:
        InputError: naming ``key`` when the backbone's fc6 does not fit (see :func:`backbone_fc6`)
            or the head's fc6 is not ``C · Σ n²`` wide.
    """
    source = backbone_fc6(backbone, levels, key)
    target = _first_linear(head)
    channels = int(backbone.out_channels)
    width = channels * sum(int(n) ** 2 for n in levels)
    if target is None or target.in_features != width or target.out_features != source.out_features:
        raise InputError(key, f"the SPP head's fc6 is not {width} -> {source.out_features} wide")
    target.weight.zero_()
    target.weight[:, level_columns(levels, channels, backbone.pool_size)] = source.weight
    target.bias.copy_(source.bias)
    return target


def resolve_fc6_init(choice: str | None, backbone: nn.Module, levels: Sequence[int], pretrained: bool,
                     key: str = "fc6_init") -> str:
    """The fc6 start the builder uses: ``choice``, or (None) "imagenet" when it is possible.

    Args:
        choice: "imagenet", "random" or None.
        backbone: the backbone whose fc6 would be copied.
        levels: the pyramid levels.
        pretrained: whether the backbone carries ImageNet weights.
        key: the setting named in errors.

    Raises:
        InputError: naming ``key``: an unknown choice, or "imagenet" for a backbone without
            ImageNet weights or without an fc6 that fits a level.
    """
    if choice is None:
        if not pretrained:
            return "random"
        try:
            backbone_fc6(backbone, levels, key)
        except InputError:
            return "random"
        return "imagenet"
    if choice not in FC6_INITS:
        raise InputError(key, f"unknown fc6 initialisation {choice!r}; choose one of {', '.join(FC6_INITS)}")
    if choice == "imagenet":
        if not pretrained:
            raise InputError(key, f"'imagenet' needs the backbone's ImageNet weights ({type(backbone).__name__} "
                                  "is built without them: set pretrained_backbone: true, or fc6_init: random)")
        backbone_fc6(backbone, levels, key)
    return choice
