"""A small Trainer run for the preemption tests, as a real process: ``python _preempt_train.py OUT ITERS [--resume]``.

A linear model on a synthetic dataset with random augmentation (so RNG state matters), each step
slowed down by ``VISIONTASKS_TEST_STEP_SLEEP`` seconds so that a signal lands inside a step, the
data loader or a checkpoint write. Signals are handled as ``run_training`` handles them
(``handling_signals``) and reported as the tools do (``run_cli``): one line, exit 130/143.

Shape shorthand: samples are (3,) vectors, targets {"y": (1,)}.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
from torch.utils.data import Dataset

REPO = Path(__file__).resolve().parents[1]
for folder in (REPO, REPO / "tools"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from visiontasks.engine.preempt import handling_signals  # noqa: E402
from visiontasks.engine.trainer import Trainer  # noqa: E402

TRAIN = dict(batch_size=3, lr=0.05, momentum=0.9, weight_decay=1e-3, schedule="step", steps=[20], gamma=0.5,
             seed=3, log_every=1, checkpoint_every=7, eval_every=5, num_workers=0, device="cpu", amp="none")


class Augmented(Dataset):
    def __len__(self) -> int:
        return 10

    def __getitem__(self, i: int):
        x = torch.full((3,), float(i)) / 10 + 0.1 * torch.randn(3)
        return x, {"y": x.sum().reshape(1) * 2 - 1}


def collate(batch):
    return [b[0] for b in batch], [b[1] for b in batch]


def forward(model: nn.Module, images, targets) -> dict[str, torch.Tensor]:
    time.sleep(float(os.environ.get("VISIONTASKS_TEST_STEP_SLEEP", "0")))
    pred = nn.functional.dropout(model(torch.stack(images)), 0.2)  # the model's own RNG draws
    return {"loss_mse": nn.functional.mse_loss(pred, torch.stack([t["y"] for t in targets]))}


def evaluate(model: nn.Module) -> dict:
    with torch.no_grad():
        return {"weight_sum": float(sum(p.sum() for p in model.parameters()))}


def make_trainer(out: str | Path, iters: int) -> Trainer:
    torch.manual_seed(0)
    return Trainer(nn.Linear(3, 1), Augmented(), collate, out, max_iters=iters, **TRAIN, eval_fn=evaluate,
                   forward_fn=forward)


def main(argv: list[str]) -> int:
    out, iters, resume = argv[0], int(argv[1]), "--resume" in argv
    trainer = make_trainer(out, iters)
    if resume and trainer.checkpoint_path.is_file():
        trainer.resume()
    with handling_signals():
        trainer.train()
    return 0


if __name__ == "__main__":
    torch.set_num_threads(1)
    from _common import run_cli

    sys.exit(run_cli(main))
