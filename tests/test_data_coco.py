"""COCODetection: contiguous labels, xywh -> xyxy, crowd as difficult, bad files; the real coco128 json."""
from __future__ import annotations

import json
from collections import Counter

import pytest
import torch
from PIL import Image

from visiontasks.data import COCODetection, build_dataset, dataset_classes
from visiontasks.errors import InputError


def _tiny(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for name, (w, h) in (("a.jpg", (40, 30)), ("b.jpg", (20, 10))):
        Image.new("RGB", (w, h), (10, 200, 30)).save(images / name)
    data = {
        "images": [{"id": 7, "file_name": "a.jpg", "width": 40, "height": 30},
                   {"id": 3, "file_name": "b.jpg", "width": 20, "height": 10}],
        "categories": [{"id": 5, "name": "zebra"}, {"id": 2, "name": "bicycle"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 5, "bbox": [1.5, 2.0, 10.0, 4.0], "area": 40, "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 2, "bbox": [0, 0, 5, 5], "area": 25, "iscrowd": 1},
            {"id": 3, "image_id": 7, "category_id": 2, "bbox": [3, 3, 0, 4], "area": 0, "iscrowd": 0},
        ],
    }
    ann = tmp_path / "instances.json"
    ann.write_text(json.dumps(data))
    return images, ann


def test_labels_boxes_and_crowd(tmp_path):
    images, ann = _tiny(tmp_path)
    ds = COCODetection(images, ann)
    assert ds.classes == ("bicycle", "zebra") and ds.label_to_cat_id == {1: 2, 2: 5}
    assert len(ds) == 2 and ds.ids == ["7", "3"]
    t = ds.get_annotation(0)
    assert t["boxes"].tolist() == [[1.5, 2.0, 11.5, 6.0], [0.0, 0.0, 5.0, 5.0]]  # the zero-width box is dropped
    assert t["labels"].tolist() == [2, 1] and t["difficult"].tolist() == [False, True]
    assert t["coco_id"] == 7 and t["image_id"] == "7" and t["orig_size"].tolist() == [30, 40]
    image, t2 = ds[1]
    assert image.shape == (3, 10, 20) and t2["boxes"].shape == (0, 4)


@pytest.mark.parametrize("content,needle", [("{not json", "not valid JSON"), ('{"images": 3}', "COCO")])
def test_bad_json(tmp_path, content, needle):
    images, _ = _tiny(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    with pytest.raises(InputError, match=needle) as err:
        COCODetection(images, bad)
    assert err.value.path == str(bad)


def test_missing_files(tmp_path):
    images, ann = _tiny(tmp_path)
    with pytest.raises(InputError, match="not found") as err:
        COCODetection(images, tmp_path / "nope.json")
    assert err.value.path == str(tmp_path / "nope.json")
    (images / "b.jpg").unlink()
    with pytest.raises(InputError, match="missing") as err:
        COCODetection(images, ann)
    assert err.value.path == str(images / "b.jpg")


def test_build_dataset_picks_test_files(tmp_path):
    images, ann = _tiny(tmp_path)
    data = json.loads(ann.read_text())
    data["images"] = data["images"][:1]
    test_ann = tmp_path / "test.json"
    test_ann.write_text(json.dumps(data))
    cfg = {"dataset": "coco", "images": str(images), "annotations": str(ann), "test_images": None,
           "test_annotations": str(test_ann), "train_split": "trainval", "test_split": "test"}
    assert len(build_dataset(cfg, "trainval", train=True)) == 2
    assert len(build_dataset(cfg, "test", train=False)) == 1
    assert dataset_classes(cfg) == ("bicycle", "zebra")
    with pytest.raises(ValueError, match="detection"):
        build_dataset(cfg, "test", train=False, task="segmentation")


def test_coco128_counts_match_the_json(coco128_root, coco128_annotations):
    for name in ("instances_train2017.json", "instances_val2017.json"):
        path = coco128_annotations / name
        raw = json.loads(path.read_text())
        ds = COCODetection(coco128_root / "JPEGImages", path)
        assert len(ds) == len(raw["images"]) == 128
        cat_ids = sorted(c["id"] for c in raw["categories"])
        naive = Counter(a["image_id"] for a in raw["annotations"] if a["bbox"][2] > 0 and a["bbox"][3] > 0)
        first = {}
        for a in raw["annotations"]:
            first.setdefault(a["image_id"], a)
        for i in range(len(ds)):
            t = ds.get_annotation(i)
            assert len(t["boxes"]) == naive[t["coco_id"]]
            if t["coco_id"] in first:
                a = first[t["coco_id"]]
                x, y, w, h = a["bbox"]
                assert torch.allclose(t["boxes"][0], torch.tensor([x, y, x + w, y + h]))
                assert cat_ids[int(t["labels"][0]) - 1] == a["category_id"]
        assert sum(len(ds.get_annotation(i)["boxes"]) for i in range(len(ds))) == sum(naive.values())
    image, t = ds[0]
    assert list(image.shape[1:]) == t["orig_size"].tolist()
