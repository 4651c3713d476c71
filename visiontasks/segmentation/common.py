"""Pieces shared by the segmentation models: input normalisation, padding, VGG16 fc layers as convs,
and copying weights from a previous training stage.

Shape shorthand: B images, H×W input, K classes (background included).
"""
from __future__ import annotations

import os

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from visiontasks.backbones.base import IMAGENET_MEAN, IMAGENET_STD
from visiontasks.errors import InputError

__all__ = [
    "ImageNetNormalize", "pad_to_multiple", "reflect_pad", "vgg16_fc_as_conv", "vgg16_fc_head",
    "load_matching_weights", "check_num_classes", "init_from_checkpoint",
]


class ImageNetNormalize(nn.Module):
    """Maps (B, 3, H, W) images in [0, 1] to ImageNet-normalised inputs (torchvision's mean/std)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(x.shape)}")
        return (x - self.mean) / self.std


def check_num_classes(num_classes: int) -> None:
    """Raises ValueError unless ``num_classes`` (background included) is an int >= 2."""
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2 (background included), got {num_classes!r}")


def pad_to_multiple(x: torch.Tensor, multiple: int, min_size: int = 0) -> torch.Tensor:
    """Zero-pads (B, C, H, W) at the bottom/right to H', W' = max(min_size, ceil(H / multiple) · multiple).

    On ImageNet-normalised input zero is the mean colour. Crop back with ``out[..., :H, :W]``.
    """
    h, w = x.shape[-2:]
    th = max(min_size, -(-h // multiple) * multiple)
    tw = max(min_size, -(-w // multiple) * multiple)
    return F.pad(x, (0, tw - w, 0, th - h))


def _reflect_indices(n: int, before: int, after: int, device: torch.device) -> torch.Tensor:
    # Index i in [-before, n + after) reflected into [0, n) without repeating the edge (numpy "reflect");
    # pads longer than the axis reflect again (period 2(n-1)).
    i = torch.arange(-before, n + after, device=device)
    if n == 1:
        return torch.zeros_like(i)
    period = 2 * (n - 1)
    j = torch.remainder(i, period)
    return torch.where(j < n, j, period - j)


def reflect_pad(x: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """Reflection padding of (B, C, H, W) by any amount (``F.pad(mode="reflect")`` needs pad < size).

    Matches ``numpy.pad(mode="reflect")``: the edge pixel is not repeated, and pads longer than the
    image reflect back and forth.
    """
    if min(top, bottom, left, right) < 0:
        raise ValueError(f"pads must be >= 0, got {(top, bottom, left, right)!r}")
    h, w = x.shape[-2:]
    x = x.index_select(-2, _reflect_indices(h, top, bottom, x.device))
    return x.index_select(-1, _reflect_indices(w, left, right, x.device))


def vgg16_fc_as_conv(vgg: torchvision.models.VGG, fc6_dilation: int = 1,
                     fc6_padding: int = 0) -> tuple[nn.Conv2d, nn.Conv2d]:
    """VGG16's fc6 (25088 → 4096) and fc7 (4096 → 4096) convolutionalised, weights reshaped from the classifier.

    Args:
        vgg: torchvision's VGG16 (``visiontasks.backbones.vgg16_torchvision``).
        fc6_dilation: dilation of the 7×7 fc6 (4 in the dilated front-end).
        fc6_padding: zero padding of fc6 (0 in the papers).

    Returns:
        ``(fc6, fc7)``: Conv2d(512, 4096, 7) and Conv2d(4096, 4096, 1).
    """
    lin6, lin7 = vgg.classifier[0], vgg.classifier[3]
    fc6 = nn.Conv2d(512, 4096, 7, padding=fc6_padding, dilation=fc6_dilation)
    fc7 = nn.Conv2d(4096, 4096, 1)
    with torch.no_grad():
        fc6.weight.copy_(lin6.weight.view(4096, 512, 7, 7))
        fc6.bias.copy_(lin6.bias)
        fc7.weight.copy_(lin7.weight.view(4096, 4096, 1, 1))
        fc7.bias.copy_(lin7.bias)
    return fc6, fc7


def vgg16_fc_head(vgg: torchvision.models.VGG, fc6_dilation: int = 1, fc6_padding: int = 0) -> nn.Sequential:
    """The convolutionalised VGG16 head: fc6, ReLU, dropout 0.5, fc7, ReLU, dropout 0.5.

    Args:
        vgg: torchvision's VGG16.
        fc6_dilation: see :func:`vgg16_fc_as_conv`.
        fc6_padding: see :func:`vgg16_fc_as_conv`.

    Returns:
        A module mapping (B, 512, h, w) to (B, 4096, h - 6·fc6_dilation + 2·fc6_padding, w - …).
    """
    fc6, fc7 = vgg16_fc_as_conv(vgg, fc6_dilation, fc6_padding)
    return nn.Sequential(fc6, nn.ReLU(inplace=True), nn.Dropout(0.5), fc7, nn.ReLU(inplace=True), nn.Dropout(0.5))


def load_matching_weights(model: nn.Module, path: str | os.PathLike[str]) -> list[str]:
    """Copies into ``model`` every tensor of a checkpoint whose name it shares (staged training).

    The file is a state dict or a training checkpoint holding one under ``"model"`` (what
    ``visiontasks.engine.Trainer`` writes); it is read with ``torch.load(weights_only=True)``.
    Names present in only one of the two are skipped (e.g. FCN-16s's ``score_pool4`` when starting
    from FCN-32s); a shared name with another shape is an error.

    Args:
        model: the model to initialise (modified in place).
        path: the checkpoint file.

    Returns:
        The copied names, sorted.

    Raises:
        InputError: the file is missing, unreadable, not a state dict, shares no tensor with the
            model, or a shared tensor has another shape (e.g. another number of classes).
    """
    from visiontasks.engine.checkpoint import load_checkpoint  # lazy: the engine imports the registry

    state = load_checkpoint(path)
    if isinstance(state.get("model"), dict):
        state = state["model"]
    own = model.state_dict()
    copied = []
    for name, value in state.items():
        if name not in own:
            continue
        if not isinstance(value, torch.Tensor):
            raise InputError(path, f"entry {name!r} is a {type(value).__name__}, not a tensor")
        if value.shape != own[name].shape:
            raise InputError(path, f"{name!r} has shape {tuple(value.shape)} but the model expects "
                                   f"{tuple(own[name].shape)} (another number of classes or another model?)")
        copied.append(name)
    if not copied:
        raise InputError(path, f"shares no weight with {type(model).__name__} (not a checkpoint of a related model)")
    model.load_state_dict({k: state[k] for k in copied}, strict=False)
    return sorted(copied)


def init_from_checkpoint(model: nn.Module, path: str | os.PathLike[str] | None) -> nn.Module:
    """``load_matching_weights(model, path)`` unless ``path`` is None; returns ``model`` (builders' ``init_from``)."""
    if path is not None:
        load_matching_weights(model, path)
    return model
