"""Shared fixtures. Tests never need a GPU, a download or ../shared (real-data tests skip)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
COCO128_VOC = REPO.parent / "shared" / "data" / "coco128-voc"

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session", autouse=True)
def private_home(tmp_path_factory: pytest.TempPathFactory):
    """Caches the tests write (embedded data, ``proposals: auto``, the annotation cache) go to a
    temporary ``$VISIONTASKS_HOME``, never the user's ``~/.cache/visiontasks``; subprocesses inherit it."""
    home = tmp_path_factory.mktemp("visiontasks_home")
    old = os.environ.get("VISIONTASKS_HOME")
    os.environ["VISIONTASKS_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("VISIONTASKS_HOME", None)
    else:
        os.environ["VISIONTASKS_HOME"] = old


@pytest.fixture(scope="session")
def coco128_root() -> Path:
    """The VOC2007-layout folder of ../shared/data/coco128-voc (skipped when absent)."""
    root = COCO128_VOC / "VOC2007"
    if not root.is_dir():
        pytest.skip(f"real-photo subset not found at {root} (it lives in ../shared, beside a CI clone)")
    return root


@pytest.fixture(scope="session")
def coco128_annotations() -> Path:
    """The COCO json folder of ../shared/data/coco128-voc (skipped when absent)."""
    root = COCO128_VOC / "annotations"
    if not root.is_dir():
        pytest.skip(f"real-photo subset not found at {root}")
    return root


@pytest.fixture(scope="session")
def embedded_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded shapes dataset (default sizes, seed 0) built in a temporary folder: its VOC-layout root."""
    from visiontasks.data import build_embedded_dataset

    return build_embedded_dataset(tmp_path_factory.mktemp("embedded"), seed=0)
