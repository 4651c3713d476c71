"""train.optimizer: each rule of the lecture notes builds, takes one hand-computed step, and keeps
Caffe's bias convention (bias lr x2, no decay) per parameter group (issue 25)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn

from visiontasks.config import load_config
from visiontasks.engine.optim import OPTIMIZERS, build_optimizer
from visiontasks.errors import InputError

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "detection" / "default.yaml"
LR, WD, MOMENTUM = 0.1, 0.1, 0.9
W0, B0 = 1.0, 0.5        # the Linear(1, 1)'s weight and bias before the step
GW, GB = 0.4, -0.2       # their gradients
DW = GW + WD * W0        # the weight's gradient with coupled L2 decay: 0.5; the bias has none: GB

# One step from (W0, B0), computed by hand from each rule's update (first step: momentum buffers
# and moments start from the gradient). Bias: lr 2 * LR = 0.2, no decay.
EXPECTED = {
    # w - lr * d
    "sgd": (W0 - LR * DW, B0 - 2 * LR * GB),                                        # 0.95, 0.54
    # buf = d; w - lr * (d + m * buf) = w - lr * 1.9 d
    "nesterov": (W0 - LR * (1 + MOMENTUM) * DW, B0 - 2 * LR * (1 + MOMENTUM) * GB),  # 0.905, 0.576
    # sum = d^2; w - lr * d / sqrt(sum) = w - lr * sign(d)
    "adagrad": (W0 - LR, B0 + 2 * LR),                                               # 0.9, 0.7
    # sq = 0.01 d^2; w - lr * d / (0.1 |d|) = w - 10 lr sign(d)
    "rmsprop": (W0 - 10 * LR, B0 + 10 * 2 * LR),                                     # 0.0, 2.5
    # bias-corrected m = d, v = d^2: w - lr * sign(d)
    "adam": (W0 - LR, B0 + 2 * LR),                                                  # 0.9, 0.7
    # decoupled: w (1 - lr wd) - lr * sign(g); the bias group's decay is 0
    "adamw": (W0 * (1 - LR * WD) - LR, B0 + 2 * LR),                                 # 0.89, 0.7
}


def _one_step(name: str) -> tuple[torch.optim.Optimizer, nn.Linear]:
    model = nn.Linear(1, 1)
    with torch.no_grad():
        model.weight.fill_(W0)
        model.bias.fill_(B0)
    opt = build_optimizer(model, lr=LR, momentum=MOMENTUM, weight_decay=WD, optimizer=name)
    model.weight.grad = torch.full_like(model.weight, GW)
    model.bias.grad = torch.full_like(model.bias, GB)
    opt.step()
    return opt, model


def test_the_six_rules_are_the_lecture_notes() -> None:
    assert list(OPTIMIZERS) == ["sgd", "nesterov", "adagrad", "rmsprop", "adam", "adamw"]
    assert set(EXPECTED) == set(OPTIMIZERS)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_each_rule_steps_as_computed_by_hand(name: str) -> None:
    _, model = _one_step(name)
    w, b = EXPECTED[name]
    assert model.weight.item() == pytest.approx(w, abs=1e-6)
    assert model.bias.item() == pytest.approx(b, abs=1e-6)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_bias_convention_per_group(name: str) -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1, bias=False), nn.Flatten(),
                          nn.Linear(2 * 6 * 6, 2))
    opt = build_optimizer(model, lr=0.01, momentum=0.9, weight_decay=5e-4, optimizer=name)
    weights, biases = opt.param_groups
    assert [tuple(p.shape) for p in weights["params"]] == [(4, 3, 3, 3), (2, 4, 1, 1), (2, 72)]
    assert [tuple(p.shape) for p in biases["params"]] == [(4,), (2,)]
    assert (weights["lr"], weights["weight_decay"]) == (0.01, 5e-4)
    assert biases["lr"] == pytest.approx(0.02) and biases["weight_decay"] == 0.0
    # a real forward/backward/step moves every parameter and leaves them finite
    before = [p.detach().clone() for p in model.parameters()]
    model(torch.randn(2, 3, 8, 8)).square().sum().backward()
    opt.step()
    for p, p0 in zip(model.parameters(), before):
        assert torch.isfinite(p).all() and not torch.equal(p, p0)


def test_plain_pytorch_convention_still_available() -> None:
    opt = build_optimizer(nn.Linear(2, 2), lr=0.01, weight_decay=0.1, optimizer="adam",
                          bias_lr_factor=1.0, bias_weight_decay=None)
    assert [(g["lr"], g["weight_decay"]) for g in opt.param_groups] == [(0.01, 0.1), (0.01, 0.1)]


def test_momentum_matters_only_where_it_is_read() -> None:
    # sgd's second step differs with momentum; adam ignores train.momentum
    def two_steps(name: str, momentum: float) -> float:
        model = nn.Linear(1, 1, bias=False)
        with torch.no_grad():
            model.weight.fill_(1.0)
        opt = build_optimizer(model, lr=0.1, momentum=momentum, weight_decay=0.0, optimizer=name)
        for _ in range(2):
            model.weight.grad = torch.ones_like(model.weight)
            opt.step()
        return model.weight.item()
    assert two_steps("sgd", 0.9) == pytest.approx(1 - 0.1 - 0.1 * 1.9)
    assert two_steps("sgd", 0.0) == pytest.approx(0.8)
    assert two_steps("adam", 0.9) == two_steps("adam", 0.0)


def test_bad_name_is_one_line_naming_key_and_choices() -> None:
    with pytest.raises(InputError) as err:
        build_optimizer(nn.Linear(2, 2), lr=0.1, optimizer="lbfgs")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("train.optimizer:")
    assert "sgd | nesterov | adagrad | rmsprop | adam | adamw" in msg and "'lbfgs'" in msg
    with pytest.raises(ValueError, match="nesterov needs momentum > 0"):
        build_optimizer(nn.Linear(2, 2), lr=0.1, momentum=0.0, optimizer="nesterov")


def test_config_key_reaches_the_trainer(tmp_path) -> None:
    from visiontasks.engine.trainer import Trainer

    cfg = load_config(CONFIG, ["train.optimizer=rmsprop"])
    assert cfg["train"]["optimizer"] == "rmsprop"
    assert load_config(CONFIG)["train"]["optimizer"] == "sgd"
    data = [(torch.randn(2), {"y": torch.zeros(1)}) for _ in range(4)]

    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(2, 1)

        def forward(self, images, targets=None):
            pred = self.fc(torch.stack(images))
            return {"loss": pred.square().mean()}

    trainer = Trainer(Tiny(), data, lambda b: ([x for x, _ in b], [t for _, t in b]), tmp_path / "run",
                      max_iters=2, batch_size=2, lr=0.01, optimizer="rmsprop", num_workers=0, device="cpu",
                      checkpoint_every=0, log_every=1)
    assert isinstance(trainer.optimizer, torch.optim.RMSprop)
    assert [g["lr"] for g in trainer.optimizer.param_groups] == [0.01, pytest.approx(0.02)]
    assert trainer.optimizer.param_groups[0]["alpha"] == 0.99
    sgd = Trainer(Tiny(), data, lambda b: ([x for x, _ in b], [t for _, t in b]), tmp_path / "run_sgd",
                  max_iters=2, batch_size=2, lr=0.01, num_workers=0, device="cpu", checkpoint_every=0, log_every=1)
    assert isinstance(sgd.optimizer, torch.optim.SGD) and sgd.optimizer.defaults["fused"] is True
    sgd.train()  # the fused update runs in the Trainer's loop
    assert all(torch.isfinite(p).all() for p in sgd.model.parameters())


@pytest.mark.parametrize("name", list(EXPECTED))
def test_fused_update_on_the_cpu_equals_the_loop(name: str) -> None:
    """Every rule PyTorch has a fused kernel for runs fused on CPU parameters (rmsprop: none), and five
    steps of it equal PyTorch's per-parameter loop within float rounding."""
    def run(fused: bool) -> tuple[torch.optim.Optimizer, list[torch.Tensor]]:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
        opt = build_optimizer(model, lr=0.01, momentum=0.9, weight_decay=5e-4, optimizer=name)
        if not fused:
            for group in opt.param_groups:
                group["fused"] = None
        g = torch.Generator().manual_seed(1)
        for _ in range(5):
            for p in model.parameters():
                p.grad = torch.randn(p.shape, generator=g)
            opt.step()
        return opt, [p.detach().clone() for p in model.parameters()]

    opt, fused = run(True)
    assert bool(opt.defaults.get("fused")) is (name != "rmsprop")
    _, loop = run(False)
    for a, b in zip(fused, loop):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_fusable_needs_one_supported_device_and_floats() -> None:
    from visiontasks.engine.optim import fusable

    assert fusable([torch.zeros(2), torch.zeros(3, dtype=torch.bfloat16)])
    assert not fusable([])
    assert not fusable([torch.zeros(2, device="meta")])
    assert not fusable([torch.zeros(2, dtype=torch.int64)])
