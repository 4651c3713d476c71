"""Atomic checkpoint writes, safe loading of bad/hostile files, RNG state round trip."""
from __future__ import annotations

import os
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from visiontasks.engine import checkpoint as ckpt_mod
from visiontasks.engine.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from visiontasks.errors import InputError


def test_round_trip(tmp_path: Path) -> None:
    state = {"model": {"w": torch.arange(6.0).reshape(2, 3)}, "iteration": 7, "config": {"train": {"lr": 0.1}},
             "meta": {"classes": ["cat", "dog"], "task": "detection"}, "rng": [capture_rng_state()]}
    path = save_checkpoint(tmp_path / "sub" / "c.pt", state)
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["model"]["w"], state["model"]["w"])
    assert loaded["iteration"] == 7 and loaded["meta"] == state["meta"] and loaded["config"] == state["config"]
    assert sorted(os.listdir(tmp_path / "sub")) == ["c.pt"]  # no temporary file left behind


def test_crash_mid_write_keeps_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "checkpoint_last.pt"
    save_checkpoint(path, {"iteration": 1})
    real_save = torch.save

    def crashing_save(obj, f, *args, **kwargs):
        real_save({"iteration": 2, "partial": torch.zeros(1000)}, f)  # some bytes reach the temp file …
        raise OSError("disk full")  # … then the write dies

    monkeypatch.setattr(ckpt_mod.torch, "save", crashing_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"iteration": 2})
    assert load_checkpoint(path)["iteration"] == 1
    assert sorted(os.listdir(tmp_path)) == ["checkpoint_last.pt"]


def test_crash_on_first_write_leaves_no_final_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crashing_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt_mod.torch, "save", crashing_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "c.pt", {"iteration": 1})
    assert os.listdir(tmp_path) == []


def _write_truncated(path: Path) -> None:
    torch.save({"model": {"w": torch.zeros(1000)}}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b""), "not a readable"),
    (lambda p: p.write_text("model: yes\n"), "checkpoint"),
    (_write_truncated, "not a readable"),
    (lambda p: p.write_bytes(random.Random(0).randbytes(4096)), "checkpoint"),
    (lambda p: torch.save(torch.zeros(3), p), "expected a dict"),
    (lambda p: p.write_bytes(pickle.dumps({"model": {1, 2}})), "refused"),
])
def test_bad_files_raise_input_error(tmp_path: Path, make, message: str) -> None:
    path = tmp_path / "bad.pt"
    make(path)
    with pytest.raises(InputError, match=message) as info:
        load_checkpoint(path)
    assert info.value.path == str(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(InputError, match="not a file"):
        load_checkpoint(tmp_path)


class _Hostile:
    """Unpickling this calls open(marker, "w"), i.e. creates a file: code execution."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_hostile_pickle_does_not_execute(tmp_path: Path, writer: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    payload = {"model": {"w": torch.zeros(2)}, "meta": _Hostile(marker)}
    if writer == "pickle":
        path.write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, path)
    # Sanity: a plain unpickler really would run it.
    if writer == "pickle":
        pickle.loads(path.read_bytes())
        assert marker.exists()
        marker.unlink()
    with pytest.raises(InputError, match="refused"):
        load_checkpoint(path)
    assert not marker.exists()


def test_rng_state_round_trip_through_a_file(tmp_path: Path) -> None:
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    np.random.standard_normal()  # leaves a cached gaussian in numpy's state
    save_checkpoint(tmp_path / "r.pt", {"rng": capture_rng_state()})
    expected = (torch.rand(3), np.random.rand(3), np.random.standard_normal(), random.random())
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    restore_rng_state(load_checkpoint(tmp_path / "r.pt")["rng"])
    again = (torch.rand(3), np.random.rand(3), np.random.standard_normal(), random.random())
    assert torch.equal(expected[0], again[0])
    assert np.array_equal(expected[1], again[1])
    assert expected[2:] == again[2:]
