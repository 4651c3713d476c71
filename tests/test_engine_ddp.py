"""DistributedDataParallel with 2 CPU processes (gloo): same result as averaging the ranks' losses.

The ranks meet through a ``file://`` rendezvous (a FileStore in the test's tmp dir), not a port picked,
released and re-bound, which another process could take in between (issue 26: a flaky suite)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn as nn
from torch.utils.data import Dataset

from visiontasks.buffered_linear import BufferedLinear
from visiontasks.engine.optim import build_optimizer, build_scheduler
from visiontasks.engine.sampler import ResumableBatchSampler, SeededDataset

WORLD, ITERS, BATCH = 2, 4, 3
TRAIN = dict(max_iters=ITERS, batch_size=BATCH, lr=0.05, momentum=0.9, weight_decay=1e-3, schedule="step",
             steps=[2], gamma=0.5, seed=7, log_every=1, checkpoint_every=2, num_workers=0, device="cpu",
             amp="none")  # DDP's gradient averaging against one process: compared in fp32


class Augmented(Dataset):
    def __len__(self) -> int:
        return 10

    def __getitem__(self, i: int):
        x = torch.full((3,), float(i)) / 10 + 0.1 * torch.randn(3)  # random augmentation
        return x, {"y": x.sum().reshape(1) * 2 - 1, "index": torch.tensor(i)}


def collate(batch):
    return [b[0] for b in batch], [b[1] for b in batch]


def loss_of(model: nn.Module, images, targets) -> dict[str, torch.Tensor]:
    pred = model(torch.stack(images))
    return {"loss_mse": nn.functional.mse_loss(pred, torch.stack([t["y"] for t in targets]))}


def _worker(rank: int, out: str, rendezvous: str, buffered: bool = False) -> None:
    os.environ.pop("MASTER_PORT", None)  # no port anywhere: init_distributed must use the file store
    os.environ.update(VISIONTASKS_DIST_INIT_METHOD=rendezvous, RANK=str(rank), WORLD_SIZE=str(WORLD),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from visiontasks.engine.distributed import cleanup
    from visiontasks.engine.trainer import Trainer

    torch.manual_seed(0)
    seen: list[int] = []

    def forward_fn(model, images, targets):
        seen.extend(int(t["index"]) for t in targets)
        return loss_of(model, images, targets)

    def eval_fn(model: nn.Module) -> dict:
        return {"evaluated_on_rank": float(rank), "training": float(model.training)}

    layer = BufferedLinear(3, 1) if buffered else nn.Linear(3, 1)  # same initial weights
    trainer = Trainer(layer, Augmented(), collate, out, **TRAIN, eval_fn=eval_fn, forward_fn=forward_fn)
    assert isinstance(trainer.train_model, nn.parallel.DistributedDataParallel)
    in_buffer: list[bool] = []  # per step: the weight's gradient is BufferedLinear's kept buffer

    def accumulated(weight: torch.Tensor) -> None:
        kept = layer.__dict__.get("_kept_buffers")
        in_buffer.append(kept is not None and weight.grad.data_ptr() == kept.slots["grad32"][0].data_ptr())

    layer.weight.register_post_accumulate_grad_hook(accumulated)
    metrics = trainer.train()
    torch.save({"params": [p.detach().clone() for p in trainer.model.parameters()], "metrics": metrics,
                "seen": seen, "grad_in_buffer": in_buffer}, Path(out) / f"rank{rank}.pt")
    cleanup()


def _reference() -> list[torch.Tensor]:
    """One process: each step minimises the mean of the two ranks' batch losses (what DDP computes)."""
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    opt = build_optimizer(model, **TRAIN)
    sched = build_scheduler(opt, **TRAIN)
    data = SeededDataset(Augmented())
    streams = [iter(ResumableBatchSampler(10, BATCH, TRAIN["seed"], r, WORLD)) for r in range(WORLD)]
    for _ in range(ITERS):
        losses = [loss_of(model, *collate([data[k] for k in next(s)]))["loss_mse"] for s in streams]
        opt.zero_grad()
        (sum(losses) / WORLD).backward()
        opt.step()
        sched.step()
    return [p.detach() for p in model.parameters()]


@pytest.mark.parametrize("buffered", [False, True], ids=["nn_linear", "buffered_linear"])
def test_two_process_ddp_matches_the_averaged_single_process_run(tmp_path: Path, buffered: bool) -> None:
    """Also with the gradient in BufferedLinear's kept buffer, which DDP's hooks average in place."""
    rendezvous = (tmp_path / "rendezvous").as_uri()  # file:///...: a FileStore, created by the first rank
    mp.spawn(_worker, args=(str(tmp_path), rendezvous, buffered), nprocs=WORLD, join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    assert [r["grad_in_buffer"] for r in results] == [[buffered] * ITERS] * WORLD
    for p, q, ref in zip(results[0]["params"], results[1]["params"], _reference()):
        assert torch.equal(p, q)  # the replicas stay in sync
        torch.testing.assert_close(p, ref, rtol=1e-5, atol=1e-6)
    # Rank 0 evaluates (in eval mode); every rank gets its metrics.
    assert results[0]["metrics"] == results[1]["metrics"] == {"evaluated_on_rank": 0.0, "training": 0.0}
    first_epoch = [set(r["seen"][:5]) for r in results]  # 10 samples, 5 per rank per epoch
    assert first_epoch[0].isdisjoint(first_epoch[1]) and first_epoch[0] | first_epoch[1] == set(range(10))
    # Only rank 0 writes the log and the checkpoint; the checkpoint holds both ranks' RNG states.
    with (tmp_path / "log.csv").open() as f:
        assert [line.split(",")[0] for line in f][1:] == [str(i) for i in range(1, ITERS + 1)]
    state = torch.load(tmp_path / "checkpoint_last.pt", weights_only=True)
    assert state["iteration"] == ITERS and len(state["rng"]) == WORLD
    assert not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])
