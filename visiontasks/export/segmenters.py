"""Export wrapper of the segmenters: a (B, 3, H, W) batch in [0, 1] → logits and the label mask.

DeconvNet's ``nn.MaxUnpool2d`` goes through ``F.max_unpool2d``, whose size checks the ONNX tracer
cannot follow; the wrapper runs a copy of the model in which each unpooling is the same
operation written as a scatter (:class:`ScatterUnpool`, ONNX ``ScatterElements``).
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch
import torch.nn as nn

__all__ = ["SegmenterForExport", "ScatterUnpool"]


class ScatterUnpool(nn.Module):
    """``nn.MaxUnpool2d`` given the pooling switches and the output size: each value goes to the
    position its index names in its (H·W) plane, zeros elsewhere (PyTorch's per-plane indices)."""

    def forward(self, x: torch.Tensor, indices: torch.Tensor, output_size: Sequence[int]) -> torch.Tensor:
        n, c = x.shape[:2]
        h, w = output_size[-2], output_size[-1]
        out = x.new_zeros(n, c, h * w)
        return out.scatter(2, indices.flatten(2), x.flatten(2)).view(n, c, h, w)


def _scatter_unpools(model: nn.Module) -> nn.Module:
    names = [name for name, mod in model.named_modules() if isinstance(mod, nn.MaxUnpool2d)]
    if not names:
        return model
    model = copy.deepcopy(model)
    for name in names:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        if isinstance(parent, (nn.ModuleList, nn.Sequential)):
            parent[int(attr)] = ScatterUnpool()
        else:
            setattr(parent, attr, ScatterUnpool())
    return model


class SegmenterForExport(nn.Module):
    """``model(images)["out"]`` as two outputs: ``logits`` (B, C+1, H, W) and ``mask`` (B, H, W) int64
    (the per-pixel argmax, what ``Predictor.predict`` returns)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = _scatter_unpools(model)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) in [0, 1] → (logits, mask)."""
        logits = self.model(images)["out"]
        return logits, logits.argmax(1)
