"""SGD parameter groups (Caffe bias convention) and LR schedules against hand-computed values."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from visiontasks.engine.optim import build_optimizer, build_scheduler


def _lrs(max_iters: int, lr: float = 1.0, **kwargs) -> list[float]:
    """The weights-group LR used during each iteration 0..max_iters-1."""
    model = nn.Linear(2, 1)
    opt = build_optimizer(model, lr=lr, momentum=0.0, weight_decay=0.0)
    sched = build_scheduler(opt, max_iters, **kwargs)
    out = []
    for _ in range(max_iters):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_step_schedule() -> None:
    lrs = _lrs(9, lr=0.01, schedule="step", steps=[3, 6], gamma=0.1)
    expected = [0.01] * 3 + [0.001] * 3 + [0.0001] * 3
    assert lrs == pytest.approx(expected, rel=1e-12)


def test_linear_warmup_then_constant() -> None:
    # warmup_factor 0.25 over 4 iterations: 0.25, 0.25*0.75+0.25, 0.25*0.5+0.5, 0.25*0.25+0.75, then 1.
    lrs = _lrs(6, schedule="constant", warmup_iters=4, warmup_factor=0.25)
    assert lrs == pytest.approx([0.25, 0.4375, 0.625, 0.8125, 1.0, 1.0], rel=1e-12)


def test_warmup_multiplies_step_decay() -> None:
    lrs = _lrs(5, lr=2.0, schedule="step", steps=[2], gamma=0.5, warmup_iters=4, warmup_factor=0.25)
    assert lrs == pytest.approx([0.5, 0.875, 0.625, 0.8125, 1.0], rel=1e-12)


def test_cosine_schedule() -> None:
    lrs = _lrs(8, schedule="cosine")
    # 0.5 * (1 + cos(pi * it / 8)): cos(pi/4) = 0.7071067811865476, cos(pi/8) = 0.9238795325112867
    assert lrs[0] == pytest.approx(1.0)
    assert lrs[1] == pytest.approx(0.5 * (1 + 0.9238795325112867))
    assert lrs[2] == pytest.approx(0.8535533905932737)
    assert lrs[4] == pytest.approx(0.5)
    assert lrs[6] == pytest.approx(0.5 * (1 - 0.7071067811865476))


def test_bias_group_follows_caffe_convention() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))
    model[1].weight.requires_grad_(False)
    opt = build_optimizer(model, lr=0.1, momentum=0.9, weight_decay=0.01)
    weights, biases = opt.param_groups
    assert [p.shape for p in weights["params"]] == [torch.Size([2, 3])]  # frozen weight left out
    assert [p.shape for p in biases["params"]] == [torch.Size([2]), torch.Size([1])]
    assert (weights["lr"], weights["weight_decay"]) == (0.1, 0.01)
    assert (biases["lr"], biases["weight_decay"]) == (pytest.approx(0.2), 0.0)
    sched = build_scheduler(opt, 10, schedule="step", steps=[1], gamma=0.1)
    opt.step()
    sched.step()
    assert opt.param_groups[1]["lr"] == pytest.approx(2 * opt.param_groups[0]["lr"]) == pytest.approx(0.02)


def test_one_sgd_step_by_hand() -> None:
    lin = nn.Linear(1, 1)
    with torch.no_grad():
        lin.weight.fill_(2.0)
        lin.bias.fill_(1.0)
    opt = build_optimizer(lin, lr=0.1, momentum=0.0, weight_decay=0.5)
    lin(torch.tensor([[3.0]])).sum().backward()  # d/dw = 3, d/db = 1
    opt.step()
    # weight: 2 - 0.1 * (3 + 0.5 * 2) = 1.6 ; bias: 1 - (2 * 0.1) * (1 + 0) = 0.8
    assert lin.weight.item() == pytest.approx(1.6)
    assert lin.bias.item() == pytest.approx(0.8)


def test_plain_pytorch_convention() -> None:
    lin = nn.Linear(1, 1)
    opt = build_optimizer(lin, lr=0.1, weight_decay=0.5, bias_lr_factor=1.0, bias_weight_decay=None)
    assert [(g["lr"], g["weight_decay"]) for g in opt.param_groups] == [(0.1, 0.5), (0.1, 0.5)]


@pytest.mark.parametrize("kwargs", [
    {"schedule": "poly"}, {"steps": [5, 3]}, {"steps": [0]}, {"warmup_iters": -1}, {"warmup_factor": 0.0},
    {"gamma": 0.0},
])
def test_scheduler_rejects_bad_arguments(kwargs: dict) -> None:
    opt = build_optimizer(nn.Linear(1, 1), lr=0.1)
    with pytest.raises(ValueError):
        build_scheduler(opt, 10, **kwargs)


def test_optimizer_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="lr"):
        build_optimizer(nn.Linear(1, 1), lr=0.0)
    frozen = nn.Linear(1, 1).requires_grad_(False)
    with pytest.raises(ValueError, match="trainable"):
        build_optimizer(frozen, lr=0.1)
