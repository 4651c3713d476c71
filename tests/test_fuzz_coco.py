"""Property-based tests of the COCO files a user gives: instances json and results json (issue 26).

Entry points: :func:`visiontasks.evaluation.coco.coco_evaluate` with two paths (what
``tools/eval.py coco`` calls: ground truth checked, results read and checked, then pycocotools'
``loadRes``/``COCOeval``), and the dataset's reader :class:`visiontasks.data.COCODetection` (what
training builds from ``data.annotations``). Generated: COCO-shaped documents whose ids, sizes,
boxes, areas, crowd flags, polygons and RLEs take odd values (strings, lists, null, booleans,
NaN, negative or zero sizes, missing keys), results as lists or dicts of lists, and any JSON.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from _fuzz import clean, fuzz, write
from hypothesis import strategies as st

from visiontasks.data import COCODetection
from visiontasks.errors import InputError
from visiontasks.evaluation.coco import coco_evaluate

ODD = st.one_of(st.none(), st.booleans(), st.text(max_size=3), st.lists(st.integers(0, 3), max_size=2),
                st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
                st.floats(allow_nan=True, allow_infinity=True))
ids = st.one_of(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4), st.integers(-1, 0), ODD)
numbers = st.one_of(st.integers(0, 60), st.floats(-5, 80, allow_nan=False), st.just(0), st.just(-3), ODD)
boxes = st.one_of(st.lists(numbers, min_size=4, max_size=4), st.lists(numbers, max_size=6), ODD)
polygons = st.one_of(st.lists(st.lists(numbers, min_size=0, max_size=10), max_size=2),
                     st.fixed_dictionaries({"size": st.lists(st.integers(0, 40), min_size=2, max_size=2),
                                            "counts": st.one_of(st.text(max_size=6),
                                                                st.lists(st.integers(0, 40), max_size=5))}),
                     ODD)
json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=4)),
                           lambda kids: st.one_of(st.lists(kids, max_size=3),
                                                  st.dictionaries(st.text(max_size=4), kids, max_size=3)),
                           max_leaves=12)


def _maybe(draw, entry: dict) -> dict:
    """``entry`` with some keys dropped."""
    drop = draw(st.sets(st.sampled_from(sorted(entry)), max_size=1)) if draw(st.integers(0, 4)) == 0 else set()
    return {k: v for k, v in entry.items() if k not in drop}


@st.composite
def instances(draw) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return json.dumps(draw(json_values)).encode()
    images = [_maybe(draw, {"id": draw(ids), "file_name": draw(st.one_of(st.sampled_from(["a.jpg", "b.jpg", "c.jpg"]), ODD)),
                            "height": draw(st.one_of(st.just(40), numbers)),
                            "width": draw(st.one_of(st.just(50), numbers))})
              for _ in range(draw(st.integers(0, 3)))]
    cats = [_maybe(draw, {"id": draw(ids), "name": draw(st.one_of(st.sampled_from(["cat", "dog"]), ODD)),
                          "supercategory": "animal"}) for _ in range(draw(st.integers(0, 3)))]
    anns = [_maybe(draw, {"id": draw(ids), "image_id": draw(ids), "category_id": draw(ids), "bbox": draw(boxes),
                          "area": draw(numbers), "iscrowd": draw(st.one_of(st.sampled_from([0, 1]), ODD)),
                          "segmentation": draw(polygons)}) for _ in range(draw(st.integers(0, 4)))]
    doc = _maybe(draw, {"images": images, "categories": cats, "annotations": anns, "info": {}})
    return json.dumps(doc).encode()


@st.composite
def results(draw) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return json.dumps(draw(json_values)).encode()
    dets = [_maybe(draw, {"image_id": draw(ids), "category_id": draw(ids), "score": draw(numbers),
                          "bbox": draw(boxes), "segmentation": draw(polygons)})
            for _ in range(draw(st.integers(0, 4)))]
    if dets and draw(st.booleans()) and all(d.keys() == dets[0].keys() for d in dets):
        return json.dumps({k: [d[k] for d in dets] for k in dets[0]}).encode()  # a dict of lists
    return json.dumps(dets).encode()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz_coco")
    (folder / "images").mkdir()
    for name in ("a.jpg", "b.jpg"):
        (folder / "images" / name).write_bytes(b"")  # never decoded: the dataset checks names only
    return folder


def _check_evaluate(folder: Path, gt: bytes, dt: bytes, iou_type: str) -> None:
    gt_path, dt_path = write(folder, "instances.json", gt), write(folder, "results.json", dt)
    out, err = clean(lambda: coco_evaluate(gt_path, dt_path, iou_type=iou_type), None)
    if err is not None:
        assert "instances.json" in str(err) or "results.json" in str(err), str(err)
        return
    assert set(out["stats"]) >= {"AP", "AP50"}
    assert all(math.isnan(v) or 0.0 <= v <= 1.0 for v in out["stats"].values()), out["stats"]


def _check_dataset(folder: Path, gt: bytes) -> None:
    path = write(folder, "instances.json", gt)
    data, err = clean(lambda: COCODetection(folder / "images", path), None)
    if err is not None:
        assert "instances.json" in str(err) or "images" in str(err), str(err)
        return
    for k in range(len(data)):
        t = data.get_annotation(k)
        n = len(t["boxes"])
        assert t["boxes"].shape == (n, 4) and bool(np.isfinite(t["boxes"].numpy()).all())
        assert ((t["labels"] >= 1) & (t["labels"] <= len(data.classes))).all()
        assert (t["orig_size"] > 0).all(), t["orig_size"]


test_coco_evaluate_bbox, test_coco_evaluate_bbox_long = fuzz(_check_evaluate, gt=instances(), dt=results(),
                                                             iou_type=st.just("bbox"))
test_coco_evaluate_segm, test_coco_evaluate_segm_long = fuzz(_check_evaluate, fast=25, gt=instances(), dt=results(),
                                                             iou_type=st.just("segm"))
test_coco_dataset, test_coco_dataset_long = fuzz(_check_dataset, gt=instances())


# ----------------------------------------------------------------------------- inputs hypothesis found, kept
GOOD_IMAGE = {"id": 1, "file_name": "a.jpg", "height": 40, "width": 50}
GOOD_CAT = {"id": 1, "name": "cat"}
GOOD_ANN = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 10], "area": 100, "iscrowd": 0}


def _doc(images=(GOOD_IMAGE,), cats=(GOOD_CAT,), anns=(GOOD_ANN,)) -> bytes:
    return json.dumps({"images": list(images), "categories": list(cats), "annotations": list(anns)}).encode()


@pytest.mark.parametrize("gt, dt, words", [  # each was a TypeError traceback (unhashable type: 'list')
    (_doc(images=[{**GOOD_IMAGE, "id": []}], anns=[]), b"[]", "images[0] needs an 'id' (a number or a string), got []"),
    (_doc(cats=[{**GOOD_CAT, "id": []}], anns=[]), b"[]", "categories[0] needs an 'id' and a 'name'"),
    (_doc(anns=[{**GOOD_ANN, "image_id": []}]), b"[]", "annotations[0] has image_id [], not in 'images'"),
    (_doc(anns=[{**GOOD_ANN, "category_id": {}}]), b"[]", "annotations[0] has category_id {}, not in 'categories'"),
    (_doc(), b'[{"image_id": [1], "category_id": 1, "score": 0.5, "bbox": [1, 2, 3, 4]}]',
     "result 0 is for image [1], which the ground truth does not have"),
    (b"[" * 100_000, b"[]", "nested too deeply"),  # a RecursionError traceback, by hand
], ids=["image-id-list", "category-id-list", "ann-image-id-list", "ann-category-id-dict", "result-image-id-list",
        "deep-json"])
def test_found_coco_evaluate_errors(folder, gt, dt, words):
    gt_path, dt_path = write(folder, "instances.json", gt), write(folder, "results.json", dt)
    with pytest.raises(InputError) as info:
        coco_evaluate(gt_path, dt_path)
    assert words in str(info.value) and ("instances.json" in str(info.value) or "results.json" in str(info.value))


@pytest.mark.parametrize("gt, words", [
    (b"null", "must be a JSON object"),  # was pycocotools' AssertionError
    (_doc(images=[{**GOOD_IMAGE, "file_name": []}]), "image 1 needs a 'file_name' string, got []"),  # TypeError
    (_doc(images=[{**GOOD_IMAGE, "width": 0}]), "image 1 has height/width (40, 0); both must be >= 1"),  # accepted
    (_doc(images=[{**GOOD_IMAGE, "height": float("inf")}]), "image 1 lacks an integer height/width"),  # OverflowError
    (_doc(cats=[GOOD_CAT, {"id": "two", "name": "dog"}]), "category ids mix numbers and strings"),  # TypeError
], ids=["null", "file-name-list", "zero-width", "infinite-height", "mixed-category-ids"])
def test_found_coco_dataset_errors(folder, gt, words):
    path = write(folder, "instances.json", gt)
    with pytest.raises(InputError, match="instances.json") as info:
        COCODetection(folder / "images", path)
    assert words in str(info.value)


def test_a_sound_coco_file_still_loads_and_scores(folder):
    gt_path = write(folder, "instances.json", _doc())
    data = COCODetection(folder / "images", gt_path)
    assert data.classes == ("cat",) and data.get_annotation(0)["boxes"].tolist() == [[1.0, 2.0, 11.0, 12.0]]
    dt_path = write(folder, "results.json", b'[{"image_id": 1, "category_id": 1, "score": 0.9, "bbox": [1, 2, 10, 10]}]')
    assert coco_evaluate(gt_path, dt_path)["stats"]["AP"] == pytest.approx(1.0)
