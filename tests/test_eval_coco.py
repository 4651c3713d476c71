"""COCO evaluation through pycocotools on tiny hand-built ground truth and on the real coco128 json."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from visiontasks.errors import InputError
from visiontasks.evaluation import COCO_STAT_NAMES, detections_to_coco, eval_coco


def _gt(first_id: int = 1) -> dict:
    anns = [(1, 1, [10, 10, 40, 30]), (1, 2, [60, 20, 30, 50]), (2, 1, [5, 5, 80, 60])]
    return {
        "images": [{"id": 1, "width": 100, "height": 100, "file_name": "a.jpg"},
                   {"id": 2, "width": 100, "height": 100, "file_name": "b.jpg"}],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        "annotations": [{"id": first_id + k, "image_id": i, "category_id": c, "bbox": b, "area": b[2] * b[3],
                         "iscrowd": 0} for k, (i, c, b) in enumerate(anns)],
    }


def _write(tmp_path: Path, data, name: str = "gt.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def _perfect(gt: dict) -> list[dict]:
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
            for a in gt["annotations"]]


def test_perfect_results_score_one(tmp_path: Path) -> None:
    gt = _gt()
    stats = eval_coco(_write(tmp_path, gt), _perfect(gt))
    assert set(stats) == set(COCO_STAT_NAMES)
    for name in ("AP", "AP50", "AP75", "AR100"):
        assert stats[name] == pytest.approx(1.0)
    assert np.isnan(stats["APs"])  # no small ground truth: COCOeval's -1 becomes NaN


def test_annotation_id_zero_is_renumbered(tmp_path: Path) -> None:
    gt = _gt(first_id=0)
    assert eval_coco(_write(tmp_path, gt), _perfect(gt))["AP"] == pytest.approx(1.0)


def test_partial_overlap_hand_computed(tmp_path: Path) -> None:
    # one gt 10 x 10, one detection 10 x 6.2 inside it: IoU 0.62 -> TP at thresholds .50 .55 .60 only
    gt = {"images": [{"id": 7, "width": 50, "height": 50}], "categories": [{"id": 3, "name": "x"}],
          "annotations": [{"id": 1, "image_id": 7, "category_id": 3, "bbox": [0, 0, 10, 10], "area": 100,
                           "iscrowd": 0}]}
    res = [{"image_id": 7, "category_id": 3, "bbox": [0, 0, 10, 6.2], "score": 0.5}]
    stats = eval_coco(_write(tmp_path, gt), res)
    assert stats["AP"] == pytest.approx(0.3)
    assert stats["AP50"] == pytest.approx(1.0) and stats["AP75"] == pytest.approx(0.0)


def test_empty_results_are_zero(tmp_path: Path) -> None:
    stats = eval_coco(_write(tmp_path, _gt()), [])
    assert stats == {name: 0.0 for name in COCO_STAT_NAMES}


def test_results_file_and_errors(tmp_path: Path) -> None:
    gt = _gt()
    gt_path = _write(tmp_path, gt)
    res_path = _write(tmp_path, _perfect(gt), "res.json")
    assert eval_coco(str(gt_path), str(res_path))["AP"] == pytest.approx(1.0)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError) as err:
        eval_coco(gt_path, bad)
    assert err.value.path == str(bad)
    with pytest.raises(ValueError, match="image 99"):
        eval_coco(gt_path, [{"image_id": 99, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1.0}])


def test_detections_to_coco_converts_xyxy_to_xywh() -> None:
    out = detections_to_coco(42, np.array([[10.0, 20.0, 50.0, 80.0]]), np.array([0.5]), np.array([2]), {1: 7, 2: 9})
    assert out == [{"image_id": 42, "category_id": 9, "bbox": [10.0, 20.0, 40.0, 60.0], "score": 0.5}]
    with pytest.raises(ValueError, match="no COCO category"):
        detections_to_coco(1, np.zeros((1, 4)), np.ones(1), np.array([3]), {1: 7})


def test_real_coco128_ground_truth_as_results_scores_one(coco128_annotations: Path) -> None:
    path = coco128_annotations / "instances_val2017.json"
    gt = json.loads(path.read_text())
    results = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
               for a in gt["annotations"] if not a.get("iscrowd", 0)]
    stats = eval_coco(path, results)
    assert stats["AP"] == pytest.approx(1.0)
    assert stats["AP50"] == pytest.approx(1.0)


def _mixed_results(gt: dict) -> list[dict]:
    """Per category different quality: cat found twice (one shifted), dog found with a poor box."""
    return [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 30], "score": 0.9},
            {"image_id": 2, "category_id": 1, "bbox": [9, 7, 80, 60], "score": 0.8},
            {"image_id": 1, "category_id": 2, "bbox": [60, 28, 30, 50], "score": 0.7},
            {"image_id": 2, "category_id": 2, "bbox": [0, 0, 20, 20], "score": 0.6}]


def test_per_class_ap_equals_cocoeval_restricted_to_the_class(tmp_path: Path) -> None:
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from visiontasks.evaluation import coco_evaluate

    gt = _gt()
    path = _write(tmp_path, gt)
    res = coco_evaluate(path, _mixed_results(gt))
    assert set(res["stats"]) == set(COCO_STAT_NAMES) and len(COCO_STAT_NAMES) == 12
    assert len(res["summary"].splitlines()) == 12
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(path))
        for cat_id, name in ((1, "cat"), (2, "dog")):
            ev = COCOeval(coco, coco.loadRes(_mixed_results(gt)), "bbox")
            ev.params.catIds = [cat_id]
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            assert res["per_class"][name] == pytest.approx(ev.stats[0], abs=1e-12)
        full = COCOeval(coco, coco.loadRes(_mixed_results(gt)), "bbox")
        full.evaluate()
        full.accumulate()
        full.summarize()
    expected = [np.nan if v < 0 else v for v in full.stats]  # pycocotools' -1 (nothing to score) is NaN here
    assert [res["stats"][k] for k in COCO_STAT_NAMES] == pytest.approx(expected, nan_ok=True)
    assert 0 < res["per_class"]["dog"] < res["per_class"]["cat"] < 1


def test_segm_polygons_score_one(tmp_path: Path) -> None:
    from visiontasks.evaluation import coco_evaluate

    gt = _gt()
    for ann in gt["annotations"]:
        x, y, w, h = ann["bbox"]
        ann["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    results = [{"image_id": a["image_id"], "category_id": a["category_id"], "segmentation": a["segmentation"],
                "score": 0.9} for a in gt["annotations"]]
    import pycocotools.mask as mask_utils

    for r in results:  # results carry RLE, as exported by mask models
        rles = mask_utils.frPyObjects(r["segmentation"], 100, 100)
        r["segmentation"] = mask_utils.merge(rles)
        r["segmentation"]["counts"] = r["segmentation"]["counts"].decode("ascii")
    res = coco_evaluate(_write(tmp_path, gt), results, iou_type="segm")
    assert res["stats"]["AP"] == pytest.approx(1.0)
    with pytest.raises(InputError, match="segmentation"):
        coco_evaluate(_write(tmp_path, _gt(), "plain.json"), results, iou_type="segm")


def test_dict_of_lists_results_converted_with_a_warning(tmp_path: Path, capsys) -> None:
    gt = _gt()
    listed = _perfect(gt)
    columns = {k: [r[k] for r in listed] for k in listed[0]}
    path = _write(tmp_path, columns, "res.json")
    assert eval_coco(_write(tmp_path, gt), path)["AP"] == pytest.approx(1.0)
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and str(path) in err and "converted" in err
    ragged = _write(tmp_path, {"image_id": [1], "score": [0.5, 0.4]}, "ragged.json")
    with pytest.raises(InputError, match="equal-length lists"):
        eval_coco(_write(tmp_path, gt), ragged)
