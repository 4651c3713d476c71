"""FCN's ×2 upsampling layers: fixed at bilinear (the released voc-fcn*/net.py, lr_mult 0) or learned
(the paper's text), switched by ``learn_upsampling``."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from visiontasks.engine.optim import build_optimizer
from visiontasks.registry import get_model
from visiontasks.segmentation.fcn import FCN
from visiontasks.segmentation.upsample import bilinear_kernel

K = 3
UP2 = ("upscore2", "upscore_pool4")


def _meta(name: str, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return get_model(name, num_classes=K, **kwargs)


def _optimised(model: nn.Module) -> set[int]:
    opt = build_optimizer(model, lr=0.1, momentum=0.99)
    return {id(p) for group in opt.param_groups for p in group["params"]}


@pytest.mark.parametrize("name, layers, final", [("fcn16s", UP2[:1], "upscore16"), ("fcn8s", UP2, "upscore8")])
@pytest.mark.parametrize("learn", [False, True])
def test_switch_sets_requires_grad_and_optimizer_groups(name, layers, final, learn):
    model = _meta(name, learn_upsampling=learn)
    params = _optimised(model)
    for layer in layers:
        weight = getattr(model, layer).weight
        assert weight.requires_grad is learn
        assert (id(weight) in params) is learn
    final_weight = getattr(model, final).weight
    assert not final_weight.requires_grad and id(final_weight) not in params  # fixed in both
    assert id(model.score_fr.weight) in params


def test_default_is_the_released_code_and_32s_refuses_the_switch():
    assert not _meta("fcn8s").learn_upsampling
    assert not _meta("fcn8s").upscore2.weight.requires_grad
    with pytest.raises(ValueError, match="32s"):
        FCN(num_classes=K, variant="32s", learn_upsampling=True)
    assert not _meta("fcn32s").upscore32.weight.requires_grad


def _train_step(model: FCN) -> None:
    torch.manual_seed(0)
    with torch.no_grad():  # zero-initialised scores give zero inputs (and zero gradients) to the ×2 layers
        for layer in (model.score_fr, model.score_pool4, model.score_pool3):
            layer.weight.normal_(0, 0.01)
    model.train()
    opt = build_optimizer(model, lr=1e-2, momentum=0.9, weight_decay=5e-4)
    images = torch.rand(1, 3, 24, 20)
    labels = torch.randint(0, K, (1, 24, 20))
    loss = F.cross_entropy(model(images)["out"], labels)
    opt.zero_grad()
    loss.backward()
    opt.step()


@pytest.mark.parametrize("learn", [False, True])
def test_a_training_step_keeps_fixed_layers_bilinear_and_moves_learned_ones(learn):
    model = FCN(num_classes=K, variant="8s", learn_upsampling=learn)
    _train_step(model)
    up2, up8 = bilinear_kernel(K, 4), bilinear_kernel(K, 16)
    assert torch.equal(model.upscore8.weight, up8)  # the final layer never moves
    for layer in UP2:
        weight = getattr(model, layer).weight
        assert torch.equal(weight, up2) is not learn, layer
        assert (weight.grad is not None) is learn
