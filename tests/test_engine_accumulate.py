"""Gradient accumulation (``train.accumulate``): k micro-batches give the one-pass gradient."""
from __future__ import annotations

import pytest
import torch

from visiontasks.engine.trainer import Trainer
from visiontasks.registry import get_model
from test_engine_trainer import NoisyRegression, TinyRegressor, collate


def _one_step(tmp_path, accumulate: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = TinyRegressor()
    model.drop.p = 0.0  # dropout would draw other masks per micro-batch
    trainer = Trainer(model, NoisyRegression(), collate, tmp_path / f"acc{accumulate}", max_iters=1, batch_size=4,
                      lr=0.1, momentum=0.9, weight_decay=1e-4, accumulate=accumulate, num_workers=0,
                      device="cpu", log_every=1, amp="none")  # the accumulation's arithmetic, in fp32
    trainer.train()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_accumulated_step_equals_one_pass(tmp_path):
    # batch 4 as 1, 2 (2 + 2), 3 (2 + 2: ceil(4/3) = 2 images per micro-batch) and 4 micro-batches
    ref = _one_step(tmp_path, 1)
    for k in (2, 3, 4):
        got = _one_step(tmp_path, k)
        for name in ref:
            torch.testing.assert_close(got[name], ref[name], rtol=1e-5, atol=1e-6, msg=f"accumulate={k}: {name}")
    # the step did move the weights (the comparison is not between two untouched models)
    torch.manual_seed(0)
    init = TinyRegressor().state_dict()
    assert not torch.allclose(init["hidden.weight"], ref["hidden.weight"])


def test_accumulate_out_of_range_is_named(tmp_path):
    for bad in (0, 5, 1.5):
        with pytest.raises(ValueError, match="accumulate"):
            Trainer(TinyRegressor(), NoisyRegression(), collate, tmp_path, max_iters=1, batch_size=4,
                    accumulate=bad, num_workers=0, device="cpu")


def test_yolo_loss_gradient_is_exact_under_accumulation():
    """Equation 3 is summed over the grid and divided by the batch: halves weighted ½ add up exactly."""
    torch.manual_seed(0)
    model = get_model("yolov1", num_classes=3, backbone="small", input_size=96, fc_dim=32, dropout=0.0)
    model.train()
    images = [torch.rand(3, 80, 100) for _ in range(4)]
    targets = [{"boxes": torch.tensor([[10.0, 12, 50, 60]]), "labels": torch.tensor([1])},
               {"boxes": torch.tensor([[5.0, 5, 30, 40], [60, 40, 95, 75]]), "labels": torch.tensor([2, 1])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
               {"boxes": torch.tensor([[0.0, 0, 99, 79]]), "labels": torch.tensor([2])}]

    def grads(parts):
        model.zero_grad(set_to_none=True)
        for idx in parts:
            loss = sum(model([images[i] for i in idx], [targets[i] for i in idx]).values())
            (loss * len(idx) / len(images)).backward()
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    whole, halves = grads([[0, 1, 2, 3]]), grads([[0, 1], [2, 3]])
    assert len(whole) == len(halves) > 0
    for a, b in zip(whole, halves):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
