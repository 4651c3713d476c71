"""The training loop: learning, exact resume, files written, evaluation hooks, bad input."""
from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.utils.data import Dataset

from visiontasks.engine.checkpoint import load_checkpoint
from visiontasks.engine.trainer import NonFiniteLossError, Trainer
from visiontasks.precision import resolve_amp

W_TRUE = torch.tensor([[1.0, -2.0, 0.5, 3.0]])


class NoisyRegression(Dataset):
    """y = W_TRUE x; __getitem__ augments x with noise from torch, numpy and random."""

    def __len__(self) -> int:
        return 12

    def __getitem__(self, i: int):
        g = torch.Generator().manual_seed(i)
        x = torch.randn(4, generator=g)
        x = x + 0.05 * torch.randn(4) + 0.01 * float(np.random.randn()) * (random.random() < 0.5)
        return x, {"y": (W_TRUE @ x).reshape(1), "index": torch.tensor(i), "name": f"item{i}"}


def collate(batch):
    return [b[0] for b in batch], [b[1] for b in batch]


class TinyRegressor(nn.Module):
    """A detection-style model: training mode returns a dict of losses (dropout uses the global RNG)."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(4, 8)
        self.drop = nn.Dropout(0.1)
        self.out = nn.Linear(8, 1)
        self.skip = nn.Linear(4, 1)

    def forward(self, images, targets=None):
        x = torch.stack(images)
        pred = self.skip(x) + self.out(self.drop(torch.relu(self.hidden(x))))
        if targets is None:
            return pred
        y = torch.stack([t["y"] for t in targets])
        return {"loss_mse": nn.functional.mse_loss(pred, y), "loss_l1": 0.1 * nn.functional.l1_loss(pred, y)}


def _trainer(out: Path, init_seed: int = 0, **kwargs) -> Trainer:
    torch.manual_seed(init_seed)
    args = dict(max_iters=10, batch_size=3, lr=0.01, momentum=0.9, weight_decay=1e-4, schedule="step",
                steps=[7], warmup_iters=3, log_every=1, checkpoint_every=5, num_workers=0, device="cpu")
    args.update(kwargs)
    return Trainer(TinyRegressor(), NoisyRegression(), collate, out, **args)


def _rows(out: Path) -> list[dict[str, str]]:
    with (out / "log.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _losses(rows: list[dict[str, str]]) -> list[tuple[str, ...]]:
    return [(r["iteration"], r["lr"], r["loss_mse"], r["loss_l1"], r["total_loss"]) for r in rows]


class _Interrupt:
    """forward_fn that raises KeyboardInterrupt (Ctrl-C) on its n-th call."""

    def __init__(self, n: int) -> None:
        self.n, self.calls = n, 0

    def __call__(self, model, images, targets):
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt
        return model(images, targets)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_interrupted_and_resumed_run_logs_identical_losses(tmp_path: Path, num_workers: int) -> None:
    straight = _trainer(tmp_path / "a", num_workers=num_workers)
    straight.train()

    out = tmp_path / "b"
    interrupted = _trainer(out, num_workers=num_workers, forward_fn=_Interrupt(8))
    with pytest.raises(KeyboardInterrupt):
        interrupted.train()
    assert load_checkpoint(out / "checkpoint_last.pt")["iteration"] == 5
    assert [r["iteration"] for r in _rows(out)] == [str(i) for i in range(1, 8)]  # rows 6, 7 must be redone

    resumed = _trainer(out, init_seed=123, num_workers=num_workers)  # different init: all must come from the file
    assert resumed.resume() == 5
    resumed.train()

    a, b = _rows(tmp_path / "a"), _rows(out)
    assert [r["iteration"] for r in b] == [str(i) for i in range(1, 11)]
    assert _losses(a) == _losses(b)  # bitwise: the CSV holds repr() of the floats
    for p, q in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.equal(p, q)


def test_resume_inside_a_log_window(tmp_path: Path) -> None:
    # Rows every 3 iterations, checkpoint at 5: the row of iteration 6 averages 4, 5 (before) and 6 (after).
    _trainer(tmp_path / "a", log_every=3).train()
    interrupted = _trainer(tmp_path / "b", log_every=3, forward_fn=_Interrupt(7))
    with pytest.raises(KeyboardInterrupt):
        interrupted.train()
    resumed = _trainer(tmp_path / "b", log_every=3)
    resumed.resume()
    resumed.train()
    a, b = _rows(tmp_path / "a"), _rows(tmp_path / "b")
    assert [r["iteration"] for r in a] == ["3", "6", "9", "10"]
    assert _losses(a) == _losses(b)


def test_resume_with_a_longer_schedule_follows_the_new_one(tmp_path: Path) -> None:
    _trainer(tmp_path, max_iters=4, schedule="cosine", warmup_iters=0, lr=0.01).train()
    longer = _trainer(tmp_path, max_iters=8, schedule="cosine", warmup_iters=0, lr=0.01, momentum=0.5)
    longer.resume()
    assert longer.optimizer.param_groups[0]["momentum"] == 0.5
    longer.train()
    lrs = [float(r["lr"]) for r in _rows(tmp_path)]
    # old schedule over 4 iterations: 0.5 * (1 + cos(pi * it / 4)); new one over 8 from it = 4
    assert lrs[:4] == pytest.approx([0.01, 0.0085355339, 0.005, 0.0014644661])
    assert lrs[4:] == pytest.approx([0.005, 0.0030865828, 0.0014644661, 0.0003806023])


def test_workers_do_not_change_the_run(tmp_path: Path) -> None:
    _trainer(tmp_path / "w0", max_iters=4, num_workers=0).train()
    _trainer(tmp_path / "w2", max_iters=4, num_workers=2).train()
    assert _losses(_rows(tmp_path / "w0")) == _losses(_rows(tmp_path / "w2"))


def test_loss_decreases_and_files_are_written(tmp_path: Path) -> None:
    calls = []

    def eval_fn(model: nn.Module) -> dict:
        calls.append((trainer.iteration, model.training, isinstance(model, TinyRegressor)))
        x = torch.randn(16, 4, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            err = (model(list(x)) - x @ W_TRUE.T).pow(2).mean().item()
        return {"mse": err, "per_class": {"y": err}, "curves": [1, 2]}

    out = tmp_path / "run"
    trainer = _trainer(out, max_iters=150, log_every=10, lr=0.02, steps=[120], warmup_iters=0,
                       checkpoint_every=100, eval_every=60, eval_fn=eval_fn, meta={"classes": ["y"], "task": "t"},
                       config={"train": {"lr": 0.02}})
    metrics = trainer.train()
    rows = _rows(out)
    assert [int(r["iteration"]) for r in rows] == list(range(10, 151, 10))
    first, last = float(rows[0]["total_loss"]), float(rows[-1]["total_loss"])
    assert last < 0.05 * first
    assert float(rows[-1]["lr"]) == pytest.approx(0.002)
    assert calls == [(60, False, True), (120, False, True), (150, False, True)]
    assert trainer.model.training  # back in training mode
    assert metrics["mse"] < 0.05 and metrics["curves"] == [1, 2]
    evals = [json.loads(line) for line in (out / "eval_log.jsonl").read_text().splitlines()]
    assert [e["iteration"] for e in evals] == [60, 120, 150] and evals[-1]["per_class/y"] == metrics["mse"]
    assert (out / "loss.png").stat().st_size > 1000
    assert any(p.name.startswith("events.out.tfevents") for p in (out / "tb").iterdir())
    state = load_checkpoint(out / "checkpoint_last.pt")
    assert state["iteration"] == 150 and state["meta"] == {"classes": ["y"], "task": "t"}
    assert state["config"] == {"train": {"lr": 0.02}} and not any(k.startswith("module.") for k in state["model"])
    assert set(state) >= {"optimizer", "scheduler", "scaler", "rng", "logger"}


def test_resuming_a_finished_run_evaluates_again_without_a_second_record(tmp_path: Path) -> None:
    """``--resume`` on a finished run re-evaluates (the tool prints the metrics) and replaces the record of
    the last iteration in eval_log.jsonl instead of appending a copy (found by the slow signal-chain test,
    whose last resume met an already finished run)."""
    out = tmp_path / "run"
    calls = []

    def eval_fn(model: nn.Module) -> dict:
        calls.append(1)
        return {"mse": 0.5}

    _trainer(out, eval_every=4, eval_fn=eval_fn).train()
    first = [json.loads(line)["iteration"] for line in (out / "eval_log.jsonl").read_text().splitlines()]
    assert first == [4, 8, 10]
    again = _trainer(out, eval_every=4, eval_fn=eval_fn)
    assert again.resume() == 10
    assert again.train() == {"mse": 0.5} and len(calls) == 4
    assert [json.loads(line)["iteration"] for line in (out / "eval_log.jsonl").read_text().splitlines()] == first


def test_train_config_section_is_accepted_and_unknown_keys_named(tmp_path: Path) -> None:
    from visiontasks.config import DEFAULTS

    cfg = dict(DEFAULTS["train"], max_iters=2, log_every=1)
    trainer = Trainer(TinyRegressor(), NoisyRegression(), collate, tmp_path, **cfg, num_workers=0, device="cpu")
    # amp: null = auto: bf16 on a CPU with native bf16 (as resolve_amp decides), else fp32
    assert trainer.amp_dtype is resolve_amp(None, "cpu")
    assert trainer.use_amp is (resolve_amp(None, "cpu") is not None)
    with pytest.raises(ValueError, match="lr_policy"):
        Trainer(TinyRegressor(), NoisyRegression(), collate, tmp_path, max_iters=2, lr_policy="step")
    with pytest.raises(ValueError, match="max_iters"):
        Trainer(TinyRegressor(), NoisyRegression(), collate, tmp_path, max_iters=0)


def test_non_finite_loss_stops_without_saving(tmp_path: Path) -> None:
    calls = []

    def forward_fn(model, images, targets):
        calls.append(1)
        losses = model(images, targets)
        if len(calls) == 4:
            losses["loss_mse"] = losses["loss_mse"] * float("nan")
        return losses

    trainer = _trainer(tmp_path, checkpoint_every=2, forward_fn=forward_fn)
    with pytest.raises(NonFiniteLossError, match="iteration 4"):
        trainer.train()
    assert load_checkpoint(tmp_path / "checkpoint_last.pt")["iteration"] == 2
    assert trainer.iteration == 3


def test_forward_fn_must_return_a_loss_dict(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, forward_fn=lambda m, x, t: m(x))
    with pytest.raises(TypeError, match="dict of scalar losses"):
        trainer.train()


def test_resume_from_bad_or_foreign_checkpoints(tmp_path: Path) -> None:
    from visiontasks.engine.checkpoint import save_checkpoint
    from visiontasks.errors import InputError

    trainer = _trainer(tmp_path)
    with pytest.raises(InputError, match="not found"):
        trainer.resume()
    save_checkpoint(tmp_path / "weights.pt", {"model": TinyRegressor().state_dict()})
    with pytest.raises(InputError, match="not a training checkpoint"):
        trainer.resume(tmp_path / "weights.pt")
    other = Trainer(nn.Linear(4, 1), NoisyRegression(), collate, tmp_path / "o", max_iters=1)
    save_checkpoint(tmp_path / "other.pt", other.state_dict())
    with pytest.raises(InputError, match="does not match"):
        trainer.resume(tmp_path / "other.pt")
