"""Bad input found inside a DataLoader worker reaches the user as the same one-line InputError."""
from __future__ import annotations

import pickle

import pytest
from torch.utils.data import DataLoader, Dataset

from visiontasks.errors import InputError


class _Broken(Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int):
        raise InputError("/data/props/000003.npy", "no proposals for this image")


def test_input_error_from_a_worker_keeps_its_path_and_problem():
    with pytest.raises(InputError) as info:
        for _ in DataLoader(_Broken(), num_workers=1):
            pass
    assert str(info.value) == "/data/props/000003.npy: no proposals for this image"
    assert info.value.path == "/data/props/000003.npy" and "Traceback" not in str(info.value)


def test_input_error_pickles():
    err = pickle.loads(pickle.dumps(InputError("a.xml", "not XML")))
    assert (err.path, err.problem, str(err)) == ("a.xml", "not XML", "a.xml: not XML")
