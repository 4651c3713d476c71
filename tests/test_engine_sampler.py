"""Resumable, sharded batch sampler and per-sample seeded data loading."""
from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from visiontasks.engine.sampler import ResumableBatchSampler, SeededDataset, epoch_permutation


def _take(sampler: ResumableBatchSampler, n: int) -> list[list[tuple[int, int]]]:
    return list(itertools.islice(iter(sampler), n))


@pytest.mark.parametrize("world", [1, 2, 3])
def test_each_epoch_is_a_permutation_shared_by_the_ranks(world: int) -> None:
    n, batch = 7, 2
    per_rank = -(-n // world)  # ceil
    epochs = 3
    streams = []
    for rank in range(world):
        batches = _take(ResumableBatchSampler(n, batch, seed=5, rank=rank, world_size=world),
                        epochs * per_rank // batch + 1)
        streams.append([idx for b in batches for idx, _ in b])
    for e in range(epochs):
        # Plain reference: the epoch's permutation, padded by wrapping, dealt round-robin to the ranks.
        perm = epoch_permutation(n, 5, e)
        padded = [perm[i % n] for i in range(per_rank * world)]
        for rank in range(world):
            dealt = [padded[s] for s in range(rank, per_rank * world, world)]
            assert streams[rank][e * per_rank:(e + 1) * per_rank] == dealt
        union = {i for r in range(world) for i in streams[r][e * per_rank:(e + 1) * per_rank]}
        assert union == set(range(n))
    assert epoch_permutation(n, 5, 0) != epoch_permutation(n, 5, 1)  # reshuffled every epoch
    assert sorted(epoch_permutation(n, 5, 0)) == list(range(n))


@pytest.mark.parametrize("world, rank", [(1, 0), (2, 1)])
def test_starting_at_an_iteration_equals_skipping_batches(world: int, rank: int) -> None:
    full = _take(ResumableBatchSampler(10, 3, seed=1, rank=rank, world_size=world), 20)
    for start in (0, 1, 4, 7, 13):
        resumed = _take(ResumableBatchSampler(10, 3, seed=1, rank=rank, world_size=world, start_iter=start), 20 - start)
        assert resumed == full[start:]


def test_sample_seeds_are_distinct_and_seed_dependent() -> None:
    keys = [k for b in _take(ResumableBatchSampler(5, 5, seed=0), 4) for k in b]
    assert len({s for _, s in keys}) == len(keys)  # 4 epochs of 5: every position its own seed
    other = [k for b in _take(ResumableBatchSampler(5, 5, seed=1), 4) for k in b]
    assert [s for _, s in keys] != [s for _, s in other]
    samplers = [ResumableBatchSampler(5, 2, seed=0, rank=r, world_size=2) for r in range(2)]
    ranks = [k for s in samplers for b in _take(s, 3) for k in b]
    assert len({s for _, s in ranks}) == len(ranks)


class _Augmented(Dataset):
    """Returns draws from all three RNGs, as a random augmentation would."""

    def __len__(self) -> int:
        return 6

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.tensor([float(i), torch.rand(()).item(), random.random(), float(np.random.rand())])


def _collate(batch: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack(batch)


def _load(num_workers: int, start_iter: int, n: int) -> list[torch.Tensor]:
    sampler = ResumableBatchSampler(6, 4, seed=3, start_iter=start_iter)
    loader = DataLoader(SeededDataset(_Augmented()), batch_sampler=sampler, collate_fn=_collate,
                        num_workers=num_workers, generator=torch.Generator().manual_seed(0))
    return list(itertools.islice(iter(loader), n))


def test_augmentation_is_independent_of_workers_and_resume() -> None:
    main = _load(0, 0, 5)
    workers = _load(2, 0, 5)
    resumed = _load(2, 2, 3)
    for a, b in zip(main, workers):
        assert torch.equal(a, b)
    for a, b in zip(main[2:], resumed):
        assert torch.equal(a, b)
    flat = torch.cat(main)
    assert len(set(flat[:, 1].tolist())) == len(flat)  # each sample got its own random draw


def test_loading_in_the_main_process_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    expected = (torch.rand(2), random.random(), np.random.rand())
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    ds = SeededDataset(_Augmented())
    first, second = ds[(2, 123)], ds[(2, 123)]
    assert torch.equal(first, second)
    assert not torch.equal(first, ds[(2, 124)])
    got = (torch.rand(2), random.random(), np.random.rand())
    assert torch.equal(expected[0], got[0]) and expected[1:] == got[1:]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="empty"):
        ResumableBatchSampler(0, 1)
    with pytest.raises(ValueError, match="rank"):
        ResumableBatchSampler(3, 1, rank=2, world_size=2)
