"""The embedded shapes dataset: determinism, caching, and ground truth consistent with the pixels."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from visiontasks.data import (
    EMBEDDED_CLASSES, VOCDetection, VOCSegmentation, build_embedded_dataset, default_cache_dir, embedded_classes,
    read_label_png,
)
from visiontasks.data.shapes import SMALL_SIDE

SMALL = dict(num_trainval=12, num_test=6, image_size=96)


def _files(root, sub):
    return {p.name: p.read_bytes() for p in sorted((root / sub).iterdir())}


def test_same_seed_gives_identical_files(tmp_path):
    a = build_embedded_dataset(tmp_path / "a", seed=3, **SMALL)
    b = build_embedded_dataset(tmp_path / "b", seed=3, **SMALL)
    c = build_embedded_dataset(tmp_path / "c", seed=4, **SMALL)
    assert a.name == b.name != c.name
    for sub in ("Annotations", "SegmentationClass", "JPEGImages", "ImageSets/Main"):
        assert _files(a, sub) == _files(b, sub)
    assert _files(a, "Annotations") != _files(c, "Annotations")


def test_reused_when_complete_and_rebuilt_when_not(tmp_path):
    root = build_embedded_dataset(tmp_path, seed=1, **SMALL)
    xml = root / "Annotations" / "000000.xml"
    xml.write_text("sentinel")  # a reused dataset is not rewritten
    assert build_embedded_dataset(tmp_path, seed=1, **SMALL) == root and xml.read_text() == "sentinel"
    (root / ".complete").unlink()  # an incomplete folder is replaced
    assert build_embedded_dataset(tmp_path, seed=1, **SMALL) == root
    assert xml.read_text().startswith("<annotation>")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_cache_dir_and_argument_checks(tmp_path, monkeypatch):
    monkeypatch.setenv("VISIONTASKS_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path
    assert embedded_classes() == EMBEDDED_CLASSES and 3 <= len(EMBEDDED_CLASSES) <= 4
    for bad in (dict(num_trainval=0), dict(image_size=10), dict(seed=-1)):
        with pytest.raises(ValueError):
            build_embedded_dataset(tmp_path, **bad)


def test_layout_and_splits(embedded_root):
    main_tv = (embedded_root / "ImageSets/Main/trainval.txt").read_text().split()
    main_test = (embedded_root / "ImageSets/Main/test.txt").read_text().split()
    assert len(main_tv) == 300 and len(main_test) == 100 and not set(main_tv) & set(main_test)
    assert (embedded_root / "ImageSets/Segmentation/train.txt").read_text().split() == main_tv
    assert (embedded_root / "ImageSets/Segmentation/val.txt").read_text().split() == main_test
    seg = VOCSegmentation(embedded_root, "val", classes=EMBEDDED_CLASSES)
    image, t = seg[0]
    assert image.shape[1:] == t["mask"].shape == (160, 160)


def test_ground_truth_matches_pixels(embedded_root):
    ds = VOCDetection(embedded_root, "trainval", classes=EMBEDDED_CLASSES)
    n_empty = n_difficult = n_overlap = 0
    for i in range(len(ds)):
        t = ds.get_annotation(i)
        boxes, labels, diff = t["boxes"].long().tolist(), t["labels"].tolist(), t["difficult"].tolist()
        n_empty += not boxes
        n_difficult += sum(diff)
        if len(boxes) > 1:
            iou = box_iou(t["boxes"], t["boxes"]).fill_diagonal_(0)
            n_overlap += bool((iou > 0).any())
        if i % 5:
            continue
        mask = read_label_png(embedded_root / "SegmentationClass" / f"{ds.ids[i]}.png")
        assert set(np.unique(mask).tolist()) <= {0, 1, 2, 3, 255}
        covered = np.zeros_like(mask, dtype=bool)
        for (x0, y0, x1, y1), lab, d in zip(boxes, labels, diff):
            assert 0 <= x0 <= x1 < 160 and 0 <= y0 <= y1 < 160
            small = (x1 - x0 + 1) < SMALL_SIDE and (y1 - y0 + 1) < SMALL_SIDE
            assert d == small
            inside = mask[y0:y1 + 1, x0:x1 + 1]
            if not d:  # a visible object shows its class inside its box
                assert (inside == lab).any()
            covered[y0:y1 + 1, x0:x1 + 1] |= True
        assert not ((mask > 0) & (mask < 255) & ~covered).any()  # every labelled pixel lies in a box
    assert n_empty >= 3 and n_difficult >= 3 and n_overlap >= 3


def test_classes_balanced_enough(embedded_root):
    ds = VOCDetection(embedded_root, "trainval", classes=EMBEDDED_CLASSES)
    labels = torch.cat([ds.get_annotation(i)["labels"] for i in range(len(ds))])
    counts = torch.bincount(labels, minlength=4)[1:]
    assert counts.min() >= 0.2 * counts.sum()
