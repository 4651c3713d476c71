"""Iteration-based, rank-sharded, exactly resumable data loading.

The training stream is an endless sequence of epochs. Epoch ``e`` is a permutation of the
``N`` dataset indices drawn from a generator seeded by ``(seed, e)``, padded (by wrapping
around, as :class:`torch.utils.data.DistributedSampler` does) to ``L * W`` slots where
``W`` is the world size and ``L = ceil(N / W)``; rank ``r`` takes slots ``r, r + W, r + 2W …``.
Iteration ``k`` of rank ``r`` reads the rank's stream positions ``[k*B, (k+1)*B)``
(``B`` = batch size per rank), so starting at any iteration is arithmetic: no data is loaded to
skip ahead.

Every sample carries its own seed, derived from ``(seed, epoch, slot)``; :class:`SeededDataset`
seeds torch, numpy and ``random`` with it before calling the wrapped dataset. Random
augmentation therefore depends only on the sample's place in the stream, not on which worker
process loads it nor on when the run was interrupted and resumed.

Shape shorthand: each batch the sampler yields is a list of ``B`` keys ``(index, sample_seed)``.
"""
from __future__ import annotations

import math
import random
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, get_worker_info

__all__ = ["mix_seed", "epoch_permutation", "ResumableBatchSampler", "SeededDataset"]


def mix_seed(*values: int) -> int:
    """A 63-bit seed that depends on all of ``values`` (numpy's SeedSequence hashing)."""
    words = np.random.SeedSequence([int(v) for v in values]).generate_state(2, dtype=np.uint32)
    return (int(words[0]) << 31 | int(words[1]) >> 1) & (2**63 - 1)


def epoch_permutation(num_samples: int, seed: int, epoch: int) -> list[int]:
    """The shuffled order of epoch ``epoch`` (identical on every rank)."""
    g = torch.Generator().manual_seed(mix_seed(seed, epoch))
    return torch.randperm(num_samples, generator=g).tolist()


class ResumableBatchSampler(Sampler[list[tuple[int, int]]]):
    """Endless batch sampler of ``(index, sample_seed)`` keys for one rank; see the module docstring.

    Args:
        num_samples: dataset length ``N``.
        batch_size: samples per batch on this rank.
        seed: run seed (shuffling and per-sample seeds).
        rank: this process's rank.
        world_size: number of ranks.
        start_iter: first iteration to yield (the number of iterations already done).
    """

    def __init__(self, num_samples: int, batch_size: int, seed: int = 0, rank: int = 0,
                 world_size: int = 1, start_iter: int = 0) -> None:
        if num_samples <= 0:
            raise ValueError(f"the training dataset is empty (num_samples={num_samples!r})")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size!r}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank!r}")
        if start_iter < 0:
            raise ValueError(f"start_iter must be >= 0, got {start_iter!r}")
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.start_iter = start_iter
        self.per_rank = math.ceil(num_samples / world_size)  # L: this rank's share of an epoch

    def _epoch_keys(self, epoch: int) -> list[tuple[int, int]]:
        perm = epoch_permutation(self.num_samples, self.seed, epoch)
        total = self.per_rank * self.world_size
        padded = (perm * math.ceil(total / self.num_samples))[:total]
        slots = range(self.rank, total, self.world_size)
        return [(padded[s], mix_seed(self.seed, epoch, s)) for s in slots]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        pos = self.start_iter * self.batch_size
        epoch, offset = divmod(pos, self.per_rank)
        keys = self._epoch_keys(epoch)
        while True:
            batch = []
            while len(batch) < self.batch_size:
                if offset == self.per_rank:
                    epoch, offset = epoch + 1, 0
                    keys = self._epoch_keys(epoch)
                batch.append(keys[offset])
                offset += 1
            yield batch


class SeededDataset(Dataset):
    """Calls ``dataset[index]`` with torch, numpy and ``random`` seeded from the key's seed.

    In the main process (``num_workers=0``) the global RNG states are restored afterwards, so
    loading data never disturbs the training RNG (dropout, samplers inside the model).

    Args:
        dataset: any map-style dataset.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, sample_seed = key
        if get_worker_info() is not None:  # a worker process: its RNGs are ours to set
            _seed_all(sample_seed)
            return self.dataset[index]
        py_state, np_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            _seed_all(sample_seed)
            try:
                return self.dataset[index]
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)


def _seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
