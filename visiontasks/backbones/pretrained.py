"""Offline-safe loading of torchvision's ImageNet weights through its weight enums.

torchvision would download a missing file from the internet; on an offline machine that
hangs or fails with a long traceback. Here the file is looked up in the torch hub cache
(``$TORCH_HOME/hub/checkpoints``) first; when it is absent we raise a clear error saying
how to get it, unless ``VISIONTASKS_ALLOW_DOWNLOAD=1`` is set. Files are always read with
``torch.load(weights_only=True)``: a hostile checkpoint cannot execute code.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn
from torchvision.models import WeightsEnum

__all__ = ["weights_cache_path", "load_torchvision_weights"]


def weights_cache_path(weights: WeightsEnum) -> Path:
    """Where torch hub keeps (or would keep) the file of ``weights``."""
    filename = os.path.basename(weights.url)
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def load_torchvision_weights(model: nn.Module, weights: WeightsEnum) -> nn.Module:
    """Loads torchvision's ``weights`` into ``model`` (a torchvision architecture).

    Args:
        model: the randomly initialised torchvision model (e.g. ``torchvision.models.vgg16()``).
        weights: a weight enum member, e.g. ``VGG16_Weights.IMAGENET1K_V1``.

    Returns:
        ``model``, with the weights loaded.

    Raises:
        FileNotFoundError: the file is not cached and downloading is not allowed.
        ValueError: the cached file is not a readable state dict for this model.
    """
    path = weights_cache_path(weights)
    if not path.is_file():
        if os.environ.get("VISIONTASKS_ALLOW_DOWNLOAD") == "1":
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(weights.url, str(path), hash_prefix=None)
        else:
            raise FileNotFoundError(
                f"{path}: pretrained weights {weights} are not in the torch hub cache. "
                f"Download {weights.url} to that path (or set VISIONTASKS_ALLOW_DOWNLOAD=1 on a "
                f"machine with internet), or use pretrained=False."
            )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated or hostile file
        raise ValueError(f"{path}: not a readable weights file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, found {type(state).__name__}")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"{path}: weights do not fit {type(model).__name__}: {exc}") from exc
    return model
