"""tools/eval.py det --errors: TIDE's breakdown, the confusion matrix, AP by size; VOC results files and COCO json.

The boxes are those of tests/test_eval_tide.py's "loc" case (hand-computed there, equal to tidecv's):
VOC files hold them 1-based inclusive; the COCO json holds the same pixels as ``[x0, y0, w + 1, h + 1]``.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from test_eval_cli_options import run, write_dets, write_voc

HALF = 51 / 101
# 1-based inclusive: A, B class "cat", C class "dog"; a cat detection shifted off B (IoU 1/3)
A, B, C, SHIFTED_B = (1, 1, 10, 10), (21, 1, 30, 10), (41, 1, 50, 10), (26, 1, 35, 10)
LOC = {"ap50": (HALF + 1) / 2, "main": {"cls": 0.0, "loc": 1 - (HALF + 1) / 2, "both": 0.0, "dupe": 0.0, "bkg": 0.0,
                                        "miss": 0.0},
       "special": {"false_pos": 0.0, "false_neg": 1 - (HALF + 1) / 2}}


def _voc(tmp_path):
    root = write_voc(tmp_path / "voc", {"a": [("cat", A, 0), ("cat", B, 0), ("dog", C, 0)]})
    dets = tmp_path / "dets"
    write_dets(dets, "cat", [("a", 0.9, A), ("a", 0.8, SHIFTED_B)])
    write_dets(dets, "dog", [("a", 0.95, C)])
    return root, dets


def _coco(tmp_path):
    def xywh(b):
        return [b[0] - 1, b[1] - 1, b[2] - b[0] + 1, b[3] - b[1] + 1]

    gt = {"images": [{"id": 7, "file_name": "a.jpg", "width": 100, "height": 100}],
          "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
          "annotations": [{"id": k + 1, "image_id": 7, "category_id": c, "bbox": xywh(b), "area": 100.0, "iscrowd": 0}
                          for k, (b, c) in enumerate([(A, 1), (B, 1), (C, 2)])]}
    dets = [{"image_id": 7, "category_id": c, "bbox": xywh(b), "score": s}
            for b, c, s in [(A, 1, 0.9), (SHIFTED_B, 1, 0.8), (C, 2, 0.95)]]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    return tmp_path / "gt.json", tmp_path / "dets.json"


def test_voc_results_files_with_errors(tmp_path):
    root, dets = _voc(tmp_path)
    rc, out, err = run(["det", "--root", str(root), "--detections", str(dets), "--classes", "cat", "dog",
                        "--errors", "--out", str(tmp_path / "r.json")])
    assert rc == 0, err
    errors = json.loads((tmp_path / "r.json").read_text())["errors"]
    assert errors["ap50"] == pytest.approx(LOC["ap50"], abs=1e-12)
    assert errors["main"] == pytest.approx(LOC["main"], abs=1e-12)
    assert errors["special"] == pytest.approx(LOC["special"], abs=1e-12)
    assert "Main Errors" in out and "   dAP     0.00    24.75     0.00     0.00     0.00     0.00  " in out
    assert "Special Error" in out
    # the confusion matrix (IoU 0.5, score 0.5): A found, the shifted cat a false positive, B missed, C found
    confusion = json.loads((tmp_path / "r.json").read_text())["confusion"]
    assert confusion == {"iou": 0.5, "score": 0.5, "classes": ["cat", "dog", "background"],
                         "matrix": [[1, 0, 1], [0, 1, 0], [1, 0, 0]]}
    assert "confusion (rows: true class, columns: predicted; IoU >= 0.5, score >= 0.5)" in out


def test_coco_and_voc_paths_agree_on_the_same_boxes(tmp_path):
    root, dets = _voc(tmp_path)
    gt_json, dets_json = _coco(tmp_path)
    rc, _, err = run(["det", "--root", str(root), "--detections", str(dets), "--classes", "cat", "dog",
                      "--errors", "--out", str(tmp_path / "voc.json")])
    assert rc == 0, err
    rc, out, err = run(["det", "--metric", "coco", "--annotations", str(gt_json), "--detections", str(dets_json),
                        "--errors", "--out", str(tmp_path / "coco.json")])
    assert rc == 0, err
    voc, coco = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("voc", "coco"))
    assert coco["errors"] == voc["errors"] and coco["confusion"] == voc["confusion"]
    assert "Main Errors" in out


def test_errors_with_segm_is_one_line(tmp_path):
    gt_json, dets_json = _coco(tmp_path)
    rc, out, err = run(["det", "--metric", "coco", "--annotations", str(gt_json), "--detections", str(dets_json),
                        "--iou-type", "segm", "--errors", "--out", str(tmp_path / "r.json")])
    assert rc == 2 and not (tmp_path / "r.json").exists()
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "segm is not supported" in lines[0]


def test_without_errors_the_result_has_none(tmp_path):
    root, dets = _voc(tmp_path)
    rc, out, err = run(["det", "--root", str(root), "--detections", str(dets), "--classes", "cat", "dog",
                        "--out", str(tmp_path / "r.json")])
    assert rc == 0, err
    result = json.loads((tmp_path / "r.json").read_text())
    assert "errors" not in result and "confusion" not in result and "Main Errors" not in out


def test_errors_on_results_files_import_no_torch(tmp_path):
    import subprocess
    import sys

    from test_eval_cli_options import REPO

    root, dets = _voc(tmp_path)
    code = ("import runpy, sys\nsys.path.insert(0, 'tools')\n"
            f"sys.argv = ['tools/eval.py', 'det', '--root', {str(root)!r}, '--detections', {str(dets)!r}, "
            "'--classes', 'cat', 'dog', '--errors', '--no-cache']\n"
            "try:\n    runpy.run_path('tools/eval.py', run_name='__main__')\n"
            "except SystemExit as e:\n    assert e.code == 0, e.code\n"
            "print('LOADED', sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', "
            "'matplotlib', 'pycocotools')))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "LOADED []" in done.stdout and "Main Errors" in done.stdout


def test_ap_by_object_size_hand_computed():
    from visiontasks.evaluation.voc.score import voc_by_size

    # 0-based inclusive: a small cat (10 x 10) and a large one (100 x 100); detections in score order: a small
    # false positive 0.95, the small cat 0.9, the large cat 0.8, a large false positive 0.7
    small, large = (0, 0, 9, 9), (100, 100, 199, 199)
    small_fp, large_fp = (50, 0, 59, 9), (300, 300, 399, 399)
    preds = ([np.array([small_fp, small, large, large_fp], float)], [np.array([1, 1, 1, 1])],
             [np.array([0.95, 0.9, 0.8, 0.7])])
    gts = ([np.array([small, large], float)], [np.array([1, 1])], [np.array([False, False])])
    res = voc_by_size(preds, gts, ["cat"], metric="voc12")
    assert res["small"]["mAP"] == pytest.approx(0.5)  # FP, TP over 1 object; the large ones are ignored
    assert np.isnan(res["medium"]["mAP"])  # no object in the range
    assert res["large"]["mAP"] == 1.0  # TP, FP; the small false positive and the small cat are ignored


def test_errors_add_ap_by_size_and_say_which_ranges_are_empty(tmp_path):
    root, dets = _voc(tmp_path)  # every box 10 x 10: all small
    rc, out, err = run(["det", "--root", str(root), "--detections", str(dets), "--classes", "cat", "dog",
                        "--errors", "--metric", "voc12", "--out", str(tmp_path / "r.json")])
    assert rc == 0, err
    by_size = json.loads((tmp_path / "r.json").read_text())["by_size"]
    assert by_size["small"]["mAP"] == json.loads((tmp_path / "r.json").read_text())["mAP"]
    assert by_size["medium"] == {"mAP": None, "per_class": {"cat": None, "dog": None}}
    assert by_size["large"]["mAP"] is None
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "['medium', 'large']" in warnings[0] and "null" in warnings[0]
    assert "AP by object size" in out
