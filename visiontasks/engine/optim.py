"""Optimizers with the Caffe bias convention and per-iteration learning-rate schedules.

The papers of this lineage (R-CNN, Fast/Faster R-CNN, FCN) were trained in Caffe with
``bias_lr_mult: 2`` and ``bias_decay_mult: 0`` on every layer (py-faster-rcnn's
``models/*/solver.prototxt`` and ``train.prototxt``). :func:`build_optimizer` reproduces that by
default: parameters whose name ends in ``bias`` get ``lr * bias_lr_factor`` and
``weight_decay * bias_weight_decay`` (pass ``bias_lr_factor=1.0, bias_weight_decay=None`` for the
plain PyTorch convention, where biases are treated like weights).

``train.optimizer`` picks the update rule of the lecture notes (CS231n's "Parameter updates"),
each a ``torch.optim`` class (:data:`OPTIMIZERS`):

    sgd       SGD with (heavy-ball) momentum ``momentum``          the papers' solver
    nesterov  SGD with Nesterov momentum ``momentum``              Caffe's ``type: "Nesterov"``
    adagrad   Adagrad (eps 1e-10)                                   Caffe's ``type: "AdaGrad"``
    rmsprop   RMSprop, decay 0.99, eps 1e-8, no momentum           Caffe's ``type: "RMSProp"``
    adam      Adam, betas (0.9, 0.999), eps 1e-8, L2 decay         Caffe's ``type: "Adam"``
    adamw     AdamW, betas (0.9, 0.999), decoupled weight decay    (after Caffe's time; Loshchilov & Hutter)

The bias convention applies to all six: Caffe multiplies the rate by each blob's ``lr_mult`` in
every solver (BVLC/caffe ``src/caffe/solvers/adam_solver.cpp``, ``AdamSolver::ComputeUpdateValue``:
``local_rate = rate * net_params_lr[param_id]``; the same line in ``sgd_solver.cpp``,
``adagrad_solver.cpp``, ``rmsprop_solver.cpp``, ``nesterov_solver.cpp``) and regularises with
``weight_decay * decay_mult`` in ``SGDSolver::Regularize``, which all solvers inherit. So biases
get ``lr * bias_lr_factor`` and ``weight_decay * bias_weight_decay`` whichever rule runs (for
``adamw`` the decay is decoupled, and with the default factor 0 the biases still get none).
``momentum`` is read only by ``sgd`` and ``nesterov``.

The update runs as PyTorch's fused kernel (``fused=True``: one pass over each parameter, its
gradient and its state) wherever the parameters allow it (:func:`fusable`: CPU or CUDA floats):
PyTorch's default on the CPU is a Python loop of separate element-wise ops per parameter, several
passes over memory. Measured on this machine (2 threads, VGG16 Faster R-CNN's 32 trainable tensors,
137M values, ``build_optimizer`` at its defaults, median of 5 steps): 254 ms per step as a loop, 57 ms
fused (issue 24).
The same update within float rounding (1 ulp, ``tests/test_engine_optimizers.py``).

:func:`build_scheduler` returns a :class:`torch.optim.lr_scheduler.LambdaLR` stepped once per
iteration: during iteration ``it`` (0-based) every group's LR is ``base_lr * factor(it)`` with

    factor(it) = warmup(it) * decay(it)
    warmup(it) = warmup_factor * (1 - it / warmup_iters) + it / warmup_iters   for it < warmup_iters, else 1
    decay(it)  = gamma ** (number of steps s with s <= it)                     (schedule="step")
               = 0.5 * (1 + cos(pi * it / max_iters))                          (schedule="cosine")
               = 1                                                             (schedule="constant")

(the linear warm-up of Detectron/Goyal et al.; the step rule is Caffe's ``multistep`` policy).
"""
from __future__ import annotations

import bisect
import math
from typing import Any, Callable, Sequence

import torch
import torch.nn as nn

from visiontasks.errors import InputError

__all__ = ["build_optimizer", "build_scheduler", "lr_factor", "fusable", "SCHEDULES", "OPTIMIZERS"]

SCHEDULES = ("step", "cosine", "constant")


def _sgd(groups: list[dict], lr: float, momentum: float, weight_decay: float,
         fused: bool = False) -> torch.optim.Optimizer:
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay, fused=fused or None)


def _nesterov(groups: list[dict], lr: float, momentum: float, weight_decay: float,
              fused: bool = False) -> torch.optim.Optimizer:
    if momentum <= 0:
        raise ValueError(f"train.optimizer nesterov needs momentum > 0, got {momentum!r}")
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=True,
                           fused=fused or None)


def _adagrad(groups: list[dict], lr: float, momentum: float, weight_decay: float,
             fused: bool = False) -> torch.optim.Optimizer:
    return torch.optim.Adagrad(groups, lr=lr, weight_decay=weight_decay, eps=1e-10, fused=fused or None)


def _rmsprop(groups: list[dict], lr: float, momentum: float, weight_decay: float,
             fused: bool = False) -> torch.optim.Optimizer:  # PyTorch has no fused RMSprop
    return torch.optim.RMSprop(groups, lr=lr, alpha=0.99, eps=1e-8, weight_decay=weight_decay)


def _adam(groups: list[dict], lr: float, momentum: float, weight_decay: float,
          fused: bool = False) -> torch.optim.Optimizer:
    return torch.optim.Adam(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay,
                            fused=fused or None)


def _adamw(groups: list[dict], lr: float, momentum: float, weight_decay: float,
           fused: bool = False) -> torch.optim.Optimizer:
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay,
                             fused=fused or None)


def fusable(params: list[torch.Tensor]) -> bool:
    """Whether PyTorch's fused (one kernel per step) update can run on ``params``: all floating-point,
    all on the CPU or all on CUDA (the devices its fused SGD / Adam / AdamW / Adagrad support)."""
    devices = {p.device.type for p in params}
    return bool(params) and len(devices) == 1 and devices <= {"cpu", "cuda"} \
        and all(p.is_floating_point() for p in params)


#: ``train.optimizer`` value -> ``fn(param_groups, lr, momentum, weight_decay, fused=False)`` (see the module docstring)
OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "sgd": _sgd, "nesterov": _nesterov, "adagrad": _adagrad, "rmsprop": _rmsprop, "adam": _adam, "adamw": _adamw,
}


def build_optimizer(
    model: nn.Module,
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 0.0005,
    bias_lr_factor: float = 2.0,
    bias_weight_decay: float | None = 0.0,
    optimizer: str = "sgd",
    **_: Any,
) -> torch.optim.Optimizer:
    """The optimizer ``optimizer`` over the trainable parameters of ``model`` (``requires_grad=True``).

    Args:
        model: the network (its parameters are shared, not copied; a parameter reached under
            several names is optimised once).
        lr: base learning rate (of the weights).
        momentum: SGD momentum.
        weight_decay: L2 penalty on the weights.
        bias_lr_factor: LR multiplier of the biases (Caffe's ``bias_lr_mult``; 2 in the papers).
        bias_weight_decay: weight decay multiplier of the biases (Caffe's ``bias_decay_mult``;
            0 in the papers); ``None`` = same decay as the weights.
        optimizer: ``train.optimizer``, a key of :data:`OPTIMIZERS` (default "sgd").
        **_: other keys (e.g. the rest of a ``train:`` config) are ignored.

    Returns:
        The optimizer, with up to two parameter groups: weights first, then biases; PyTorch's fused
        update where :func:`fusable` (all but ``rmsprop``, which has none).

    Raises:
        InputError: ``optimizer`` is not a key of :data:`OPTIMIZERS` (one line naming the choices).
        ValueError: a number out of range.
    """
    if optimizer not in OPTIMIZERS:
        raise InputError("train.optimizer", f"must be one of {' | '.join(OPTIMIZERS)}, got {optimizer!r}")
    if lr <= 0:
        raise ValueError(f"lr must be positive, got {lr!r}")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
    if bias_lr_factor <= 0:
        raise ValueError(f"bias_lr_factor must be positive, got {bias_lr_factor!r}")
    weights: list[nn.Parameter] = []
    biases: list[nn.Parameter] = []
    for name, param in model.named_parameters():  # named_parameters() already skips duplicates
        if param.requires_grad:
            (biases if name.endswith("bias") else weights).append(param)
    if not weights and not biases:
        raise ValueError("the model has no trainable parameters (all have requires_grad=False)")
    bias_decay = weight_decay if bias_weight_decay is None else weight_decay * bias_weight_decay
    groups = []
    if weights:
        groups.append({"params": weights, "lr": lr, "weight_decay": weight_decay})
    if biases:
        groups.append({"params": biases, "lr": lr * bias_lr_factor, "weight_decay": bias_decay})
    return OPTIMIZERS[optimizer](groups, lr, momentum, weight_decay, fused=fusable(weights + biases))


def lr_factor(
    it: int,
    max_iters: int,
    schedule: str = "step",
    steps: Sequence[int] = (),
    gamma: float = 0.1,
    warmup_iters: int = 0,
    warmup_factor: float = 0.001,
) -> float:
    """The multiplier of the base LR during iteration ``it`` (0-based); see the module docstring."""
    if schedule == "step":
        decay = gamma ** bisect.bisect_right(list(steps), it)
    elif schedule == "cosine":
        decay = 0.5 * (1.0 + math.cos(math.pi * min(it, max_iters) / max_iters))
    elif schedule == "constant":
        decay = 1.0
    else:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if it < warmup_iters:
        alpha = it / warmup_iters
        decay *= warmup_factor * (1.0 - alpha) + alpha
    return decay


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    max_iters: int,
    schedule: str = "step",
    steps: Sequence[int] = (),
    gamma: float = 0.1,
    warmup_iters: int = 0,
    warmup_factor: float = 0.001,
    **_: Any,
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-iteration LR schedule: linear warm-up, then step decay, cosine or constant.

    Call ``scheduler.step()`` once after every ``optimizer.step()``.

    Args:
        optimizer: the optimizer whose groups' initial ``lr`` are the base LRs.
        max_iters: total iterations (the cosine period).
        schedule: "step", "cosine" or "constant".
        steps: iterations at which the step schedule multiplies the LR by ``gamma`` (ascending).
        gamma: step decay factor.
        warmup_iters: length of the linear warm-up (0 = none).
        warmup_factor: LR multiplier at iteration 0 of the warm-up.
        **_: other keys are ignored.

    Returns:
        A ``LambdaLR`` (its state dict holds only numbers, so it checkpoints with ``weights_only``).
    """
    if not isinstance(max_iters, int) or max_iters <= 0:
        raise ValueError(f"max_iters must be a positive int, got {max_iters!r}")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    steps = list(steps or ())
    if any(not isinstance(s, int) or s <= 0 for s in steps) or steps != sorted(set(steps)):
        raise ValueError(f"steps must be strictly increasing positive ints, got {steps!r}")
    if not 0 < gamma <= 1:
        raise ValueError(f"gamma must be in (0, 1], got {gamma!r}")
    if not isinstance(warmup_iters, int) or warmup_iters < 0:
        raise ValueError(f"warmup_iters must be an int >= 0, got {warmup_iters!r}")
    if not 0 < warmup_factor <= 1:
        raise ValueError(f"warmup_factor must be in (0, 1], got {warmup_factor!r}")
    kwargs = dict(max_iters=max_iters, schedule=schedule, steps=tuple(steps), gamma=gamma,
                  warmup_iters=warmup_iters, warmup_factor=warmup_factor)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(it, **kwargs))
