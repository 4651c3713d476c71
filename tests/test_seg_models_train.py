"""Segmentation models on real (CPU) tensors: odd-size forward passes and a few SGD steps that lower the loss."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from visiontasks import get_model

K = 3


def _forward_shape(name: str, size: tuple[int, int], **kwargs) -> torch.Tensor:
    torch.manual_seed(0)
    model = get_model(name, num_classes=K, **kwargs).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, *size))["out"]
    assert out.shape == (1, K, *size) and torch.isfinite(out).all()
    return out


def test_fcn8s_odd_size_and_zero_logits_at_init():
    # Zero-initialised score layers (paper §4.3) + bilinear upsampling of zeros: all logits are 0.
    assert _forward_shape("fcn8s", (37, 53)).abs().max() == 0


def test_fcn32s_at_333x500():
    assert _forward_shape("fcn32s", (333, 500)).abs().max() == 0


@pytest.mark.parametrize("name,size,kwargs", [
    ("deconvnet", (75, 100), {}),
    ("dilated_frontend", (13, 21), {"padding": "reflect"}),
    ("dilated_context", (37, 53), {"padding": "zero", "context": "large"}),
])
def test_odd_size_forward(name, size, kwargs):
    out = _forward_shape(name, size, **kwargs)
    assert out.std() > 0  # non-trivial output (random final layers)


def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(x)["out"], y, ignore_index=255)


@pytest.mark.parametrize("name,kwargs,batch,size,lr", [
    ("fcn8s", {}, 1, (32, 48), 1e-3),
    # BatchNorm over a 1×1 fc map needs > 1 image; 224×224 after padding: ~17 s on two idle cores.
    pytest.param("deconvnet", {}, 2, (32, 48), 1e-2, marks=pytest.mark.slow),
    ("dilated_context", {"padding": "zero"}, 1, (16, 24), 1e-3),
])
def test_sgd_steps_lower_the_loss(name, kwargs, batch, size, lr):
    torch.manual_seed(0)
    model = get_model(name, num_classes=K, **kwargs)
    x = torch.rand(batch, 3, *size)
    y = (x[:, 0] > 0.5).long() + (x[:, 1] > 0.7).long()  # 3 classes that the colours determine
    y[:, :2] = 255  # ignored rows
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr, momentum=0.9)

    def deterministic_loss() -> float:  # train-mode BatchNorm (batch statistics), dropout off
        model.train()
        for m in model.modules():
            if isinstance(m, nn.Dropout):
                m.eval()
        with torch.no_grad():
            return _loss(model, x, y).item()

    before = deterministic_loss()
    for _ in range(3):
        model.train()
        loss = _loss(model, x, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = deterministic_loss()
    assert after < 0.99 * before, (before, after)
