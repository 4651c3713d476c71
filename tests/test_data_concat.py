"""07+12 style training: data.extra_train_roots appends other folders' training split to data.root's."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from visiontasks.data import build_dataset
from visiontasks.data.check import check_split
from visiontasks.data.concat import ConcatSplits
from visiontasks.data.embedded import build_embedded_dataset
from visiontasks.errors import InputError


def _renamed_copy(src: Path, dst: Path, prefix: str) -> Path:
    """``src`` (VOC layout) with every image id prefixed, as VOC2012's ids differ from VOC2007's."""
    for sub in ("Annotations", "JPEGImages", "SegmentationClass"):
        if (src / sub).is_dir():
            (dst / sub).mkdir(parents=True)
            for f in (src / sub).iterdir():
                shutil.copy(f, dst / sub / f"{prefix}{f.name}")
    for sets in (src / "ImageSets").iterdir():
        (dst / "ImageSets" / sets.name).mkdir(parents=True)
        for split in sets.glob("*.txt"):
            ids = [line.split()[0] for line in split.read_text().splitlines() if line.strip()]
            (dst / "ImageSets" / sets.name / split.name).write_text("".join(f"{prefix}{i}\n" for i in ids))
    return dst


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> tuple[Path, Path]:
    a = build_embedded_dataset(tmp_path_factory.mktemp("a"), seed=5, num_trainval=6, num_test=3, image_size=64)
    b = _renamed_copy(build_embedded_dataset(tmp_path_factory.mktemp("b"), seed=6, num_trainval=4, num_test=2,
                                             image_size=64), tmp_path_factory.mktemp("b2") / "VOC", "b")
    return a, b


def _cfg(a: Path, extra: list) -> dict:
    return {"dataset": "voc", "root": str(a), "extra_train_roots": [str(e) for e in extra], "classes":
            ["circle", "square", "triangle"], "train_split": "trainval", "test_split": "test", "hflip_prob": 0.0}


@pytest.mark.parametrize("task", ["detection", "segmentation"])
def test_training_split_concatenates_and_test_split_does_not(roots, task):
    a, b = roots
    cfg = _cfg(a, [b])
    split = "trainval"
    train = build_dataset(cfg, split, train=False, task=task)
    only_a = build_dataset(_cfg(a, []), split, train=False, task=task)
    only_b = build_dataset(_cfg(b, []), split, train=False, task=task)
    assert isinstance(train, ConcatSplits)
    assert len(train) == len(only_a) + len(only_b) == 10
    assert train.ids == only_a.ids + only_b.ids
    assert all(i.startswith("b") for i in train.ids[len(only_a):])
    k = len(only_a) + 2  # the third image of the second folder
    assert train.image_path(k) == only_b.image_path(2)
    assert train.expected_size(k) == only_b.expected_size(2)
    image, target = train[k]
    image_b, target_b = only_b[2]
    assert torch.equal(image, image_b)
    key = "boxes" if task == "detection" else "mask"
    assert target["image_id"] == target_b["image_id"] == train.ids[k]
    assert torch.equal(torch.as_tensor(target[key]), torch.as_tensor(target_b[key]))
    assert check_split(train, split) == 10
    test = build_dataset(cfg, "test", train=False, task=task)
    assert not isinstance(test, ConcatSplits) and len(test) == 3


def test_duplicate_ids_are_refused_naming_both_split_files(roots):
    a, _ = roots
    with pytest.raises(InputError) as err:
        build_dataset(_cfg(a, [a]), "trainval", train=True)
    assert "is also listed in" in str(err.value) and "trainval.txt" in str(err.value)


def test_extra_roots_need_voc_and_folder_paths(roots):
    a, b = roots
    with pytest.raises(ValueError, match="applies to dataset 'voc' only, got dataset 'embedded'"):
        build_dataset({**_cfg(a, [b]), "dataset": "embedded", "root": str(a.parent)}, "trainval", train=True)
    with pytest.raises(ValueError, match=r"data.extra_train_roots\[0\] must be a folder path, got 3"):
        build_dataset({**_cfg(a, []), "extra_train_roots": [3]}, "trainval", train=True)
    with pytest.raises(InputError, match="nope"):
        build_dataset(_cfg(a, [a.parent / "nope"]), "trainval", train=True)


def test_index_out_of_range(roots):
    a, b = roots
    train = build_dataset(_cfg(a, [b]), "trainval", train=False)
    assert train.image_path(-1) == train.image_path(len(train) - 1)
    with pytest.raises(IndexError, match="index 10 out of range for 10 images"):
        train.image_path(10)
