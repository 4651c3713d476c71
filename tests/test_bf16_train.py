"""Training with ``train.amp: bf16`` on the CPU: it runs in bf16, its losses are fp32, it resumes exactly."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from torch.utils.data import Dataset

from visiontasks.engine.trainer import Trainer
from visiontasks.precision import cpu_bf16_supported

pytestmark = pytest.mark.skipif(not cpu_bf16_supported(), reason="this CPU has no native bf16 (AVX-512 BF16/AMX)")


class Blobs(Dataset):
    """8×8 single-channel images whose target is their mean brightness."""

    def __len__(self) -> int:
        return 10

    def __getitem__(self, i: int):
        x = torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(i)) + 0.1 * torch.rand(1, 8, 8)
        return x, {"y": x.mean().reshape(1)}


class ConvRegressor(nn.Module):
    """A Sequential conv body (bf16 inside under autocast) and a head; returns a loss dict in training."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Dropout(0.1), nn.Flatten())
        self.head = nn.Linear(8 * 64, 1)
        self.seen: list[torch.dtype] = []
        self.body[0].register_forward_hook(lambda m, i, o: self.seen.append(o.dtype))

    def forward(self, images, targets=None):
        feats = self.body(torch.stack(images))
        assert feats.dtype == torch.float32  # fp32 boundary at the Sequential's output
        pred = self.head(feats)
        assert pred.dtype == torch.float32
        y = torch.stack([t["y"] for t in targets])
        return {"loss_mse": nn.functional.mse_loss(pred, y)}


def _make(out: Path, max_iters: int = 8, **kwargs) -> Trainer:
    torch.manual_seed(0)
    return Trainer(ConvRegressor(), Blobs(), lambda b: ([x for x, _ in b], [t for _, t in b]), out, max_iters=max_iters,
                   batch_size=2, lr=0.05, steps=[6], log_every=1, checkpoint_every=4, num_workers=0, device="cpu",
                   amp="bf16", **kwargs)


def _log(out: Path) -> list[tuple[str, str]]:
    with (out / "log.csv").open(newline="") as f:
        return [(r["iteration"], r["loss_mse"]) for r in csv.DictReader(f)]


def test_bf16_run_resumes_exactly(tmp_path: Path) -> None:
    straight = _make(tmp_path / "a")
    assert straight.amp_dtype is torch.bfloat16 and not straight.scaler.is_enabled()
    straight.train()
    assert set(straight.model.seen) == {torch.bfloat16}  # the conv really ran in bf16

    out = tmp_path / "b"
    _make(out, max_iters=4).train()  # stops and checkpoints after iteration 4
    resumed = _make(out)
    assert resumed.resume() == 4
    resumed.train()
    assert _log(out) == _log(tmp_path / "a")
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


def test_fp16_on_cpu_is_refused_with_its_value(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="train.amp='fp16' needs CUDA"):
        Trainer(ConvRegressor(), Blobs(), list, tmp_path, max_iters=1, device="cpu", amp="fp16")
