"""tools/eval.py on undefined metrics (null + one warning line, JSON written) and malformed input
(one error line naming the file and the problem, exit code 2, no traceback)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from test_eval_cli_options import GT10, REPO, run, write_dets, write_voc


def _one_error(rc: int, err: str, *needles: str) -> str:
    assert rc == 2, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_split_without_objects_scores_null_with_a_warning(tmp_path):
    root = write_voc(tmp_path / "voc", {"a": [], "b": []})
    write_dets(tmp_path / "dets", "cat", [("a", 0.5, GT10)])
    rc, out, err = run(["det", "--root", str(root), "--detections", str(tmp_path / "dets"), "--classes", "cat", "dog",
                        "--out", str(tmp_path / "r.json")])
    assert rc == 0, err
    result = json.loads((tmp_path / "r.json").read_text())  # strict JSON: no NaN token
    assert result["mAP"] is None and result["per_class"] == {"cat": None, "dog": None}
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "undefined" in warnings[0] and "null" in warnings[0]
    assert "n/a" in out


def test_all_ignore_masks_score_null_with_a_warning(tmp_path):
    from visiontasks.data import save_label_png

    root = tmp_path / "voc"
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("m\n")
    save_label_png(root / "SegmentationClass" / "m.png", np.full((5, 6), 255, np.uint8))
    save_label_png(tmp_path / "pred" / "m.png", np.zeros((5, 6), np.uint8))
    rc, _, err = run(["seg", "--root", str(root), "--split", "val", "--classes", "road", "--predictions",
                      str(tmp_path / "pred"), "--out", str(tmp_path / "r.json")])
    assert rc == 0, err
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["mIoU"] is None and result["pixel_accuracy"] is None
    assert result["per_class"] == {"background": None, "road": None}
    assert sum(line.startswith("warning:") for line in err.splitlines()) == 1


GOOD_GT = {"images": [{"id": 1, "width": 10, "height": 10}], "categories": [{"id": 1, "name": "x"}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5]}]}
GOOD_RES = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.5}]


@pytest.mark.parametrize("gt, problem", [
    ("{not json", "not valid JSON"),
    ([1, 2], "JSON object"),
    ({"images": [], "categories": []}, "'annotations'"),
    ({**GOOD_GT, "images": [{"width": 3}]}, "images[0]"),
    ({**GOOD_GT, "annotations": [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [0, 0, 1, 1]}]}, "image_id 7"),
    ({**GOOD_GT, "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1]}]}, "bbox"),
    ({**GOOD_GT, "categories": [{"id": 1}]}, "categories[0]"),
])
def test_malformed_coco_ground_truth(tmp_path, gt, problem):
    path = tmp_path / "gt.json"
    path.write_text(gt if isinstance(gt, str) else json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(GOOD_RES))
    rc, _, err = run(["det", "--metric", "coco", "--annotations", str(path), "--detections",
                      str(tmp_path / "res.json")])
    _one_error(rc, err, str(path), problem)


@pytest.mark.parametrize("res, problem", [
    ("[{", "not valid JSON"),
    ("5", "JSON list of objects"),
    ([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5]}], "lacks ['score']"),
    ([{**GOOD_RES[0], "score": float("nan")}], "finite"),
    ([{**GOOD_RES[0], "image_id": 99}], "image 99"),
    ([{**GOOD_RES[0], "category_id": 5}], "category 5"),
    ([{**GOOD_RES[0], "bbox": [0, 0, "w", 5]}], "bbox"),
])
def test_malformed_coco_results(tmp_path, res, problem):
    (tmp_path / "gt.json").write_text(json.dumps(GOOD_GT))
    path = tmp_path / "res.json"
    path.write_text(res if isinstance(res, str) else json.dumps(res))
    rc, _, err = run(["det", "--metric", "coco", "--annotations", str(tmp_path / "gt.json"), "--detections",
                      str(path)])
    _one_error(rc, err, str(path), problem)


def test_checkpoint_of_the_other_task(tmp_path):
    seg_cfg = REPO / "configs" / "segmentation" / "default.yaml"
    det_cfg = REPO / "configs" / "detection" / "default.yaml"
    rc, _, err = run(["det", "--checkpoint", str(seg_cfg), "--root", str(tmp_path)])
    _one_error(rc, err, str(seg_cfg), "segmentation", "eval.py seg")
    rc, _, err = run(["seg", "--checkpoint", str(det_cfg), "--root", str(tmp_path)])
    _one_error(rc, err, str(det_cfg), "detection", "eval.py det")


def test_bad_results_line_names_file_and_line(tmp_path):
    root = write_voc(tmp_path / "voc", {"a": [("cat", GT10, 0)]})
    path = write_dets(tmp_path / "dets", "cat", [("a", 0.5, GT10)])
    path.write_text(path.read_text() + "a 0.4 1 2 3\n")
    rc, _, err = run(["det", "--root", str(root), "--detections", str(tmp_path / "dets"), "--classes", "cat"])
    _one_error(rc, err, str(path), "line 2")


def test_bad_annotation_coordinate_names_file(tmp_path):
    root = write_voc(tmp_path / "voc", {"a": [("cat", GT10, 0)]})
    xml = root / "Annotations" / "a.xml"
    xml.write_text(xml.read_text().replace("<xmax>10</xmax>", "<xmax>ten</xmax>"))
    write_dets(tmp_path / "dets", "cat", [])
    rc, _, err = run(["det", "--root", str(root), "--detections", str(tmp_path / "dets"), "--classes", "cat"])
    _one_error(rc, err, str(xml), "<xmax>", "'ten'")
