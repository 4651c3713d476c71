"""tools/eval.py options of the peer evaluators, on tiny hand-computed cases (no JPEGImages anywhere).

Boxes in the tables are VOC's 1-based inclusive pixels, as written in the files.
"""
from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

import eval as eval_tool  # noqa: E402
from _common import run_cli  # noqa: E402


def write_voc(root: Path, objects: dict[str, list[tuple[str, tuple[int, int, int, int], int]]],
              split: str = "test") -> Path:
    """A VOC tree with Annotations/ and ImageSets/Main/<split>.txt only: image id -> [(name, box, difficult)]."""
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    for image_id, objs in objects.items():
        body = "".join(f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin>"
                       f"<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
                       for n, b, d in objs)
        (root / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><filename>{image_id}.jpg</filename><size><width>100</width><height>100</height>"
            f"<depth>3</depth></size>{body}</annotation>")
    (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(objects) + "\n")
    return root


def write_dets(folder: Path, cls: str, lines: list[tuple[str, float, tuple[int, int, int, int]]],
               split: str = "test") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"comp4_det_{split}_{cls}.txt"
    path.write_text("".join(f"{i} {s} {b[0]} {b[1]} {b[2]} {b[3]}\n" for i, s, b in lines))
    return path


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = run_cli(eval_tool.main, argv)
    return rc, out.getvalue(), err.getvalue()


def det(root: Path, dets: Path, out: Path, *extra: str) -> dict:
    rc, _, err = run(["det", "--root", str(root), "--detections", str(dets), "--out", str(out), *extra])
    assert rc == 0, err
    return json.loads(out.read_text())


GT10 = (1, 1, 10, 10)  # a 10 x 10 box: inclusive area 100


@pytest.fixture
def three_images(tmp_path: Path) -> tuple[Path, Path]:
    """One cat per image; detections at IoU 1.0, 0.8 (10x8) and 0.7 (10x7), scores 0.9, 0.8, 0.7."""
    root = write_voc(tmp_path / "voc", {"a": [("cat", GT10, 0)], "b": [("cat", GT10, 0)], "c": [("cat", GT10, 0)]})
    write_dets(tmp_path / "dets", "cat", [("a", 0.9, GT10), ("b", 0.8, (1, 1, 10, 8)), ("c", 0.7, (1, 1, 10, 7))])
    return root, tmp_path / "dets"


def test_iou_threshold_075_hand_computed(three_images, tmp_path):
    root, dets = three_images
    at50 = det(root, dets, tmp_path / "r50.json", "--classes", "cat")
    assert at50["mAP"] == pytest.approx(1.0) and at50["iou"] == 0.5
    # at 0.75 the 0.7-overlap detection is a false positive: recall 1/3, 2/3, 2/3, precision 1, 1, 2/3;
    # 11-point: thresholds 0 .. 0.6 reach precision 1 (7 points), 0.7 .. 1 are never reached -> 7/11
    at75 = det(root, dets, tmp_path / "r75.json", "--classes", "cat", "--iou", "0.75")
    assert at75["per_class"]["cat"] == pytest.approx(7 / 11) and at75["iou"] == 0.75
    # all-point: 2/3 of recall at precision 1
    assert det(root, dets, tmp_path / "r.json", "--classes", "cat", "--iou", "0.75",
               "--metric", "voc12")["mAP"] == pytest.approx(2 / 3)
    assert det(root, dets, tmp_path / "r.json", "--classes", "cat", "--iou", "0.71")["mAP"] == pytest.approx(7 / 11)
    rc, _, err = run(["det", "--root", str(root), "--detections", str(dets), "--iou", "1.5"])
    assert rc == 2 and "--iou" in err


def test_recall_exactly_06_differs_between_references(tmp_path):
    # 5 objects, 3 found (recall 3/5 == 0.6 exactly) at precision 1. The devkit's 0.6 threshold
    # (1 - 4 * 0.1) is reached, voc_eval's np.arange value 0.6000000000000001 is not.
    root = write_voc(tmp_path / "voc", {f"i{k}": [("dog", GT10, 0)] for k in range(5)})
    dets = tmp_path / "dets"
    write_dets(dets, "dog", [(f"i{k}", 1.0 - k / 10, GT10) for k in range(3)])
    devkit = det(root, dets, tmp_path / "d.json", "--classes", "dog", "--reference", "devkit")
    voc_eval = det(root, dets, tmp_path / "v.json", "--classes", "dog", "--reference", "voc_eval")
    assert devkit["mAP"] == pytest.approx(7 / 11) and devkit["reference"] == "devkit"
    assert voc_eval["mAP"] == pytest.approx(6 / 11) and voc_eval["reference"] == "voc_eval"
    assert det(root, dets, tmp_path / "x.json", "--classes", "dog")["mAP"] == devkit["mAP"]  # devkit is the default


def test_overlap_exactly_05_differs_between_references(tmp_path):
    # detection 1..10 x 1..5 inside 1..10 x 1..10: overlap 50/100 = 0.5 exactly: >= passes, > does not
    root = write_voc(tmp_path / "voc", {"a": [("dog", GT10, 0)]})
    dets = tmp_path / "dets"
    write_dets(dets, "dog", [("a", 0.5, (1, 1, 10, 5))])
    assert det(root, dets, tmp_path / "d.json", "--classes", "dog")["mAP"] == pytest.approx(1.0)
    assert det(root, dets, tmp_path / "v.json", "--classes", "dog", "--reference", "voc_eval")["mAP"] == 0.0


def test_classes_only_in_detections_score_null_with_one_warning(three_images, tmp_path):
    root, dets = three_images
    write_dets(dets, "unicorn", [("a", 0.3, (5, 5, 20, 20))])
    rc, out, err = run(["det", "--root", str(root), "--detections", str(dets), "--classes", "cat", "unicorn",
                        "--out", str(tmp_path / "r.json")])
    assert rc == 0, err
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["per_class"] == {"cat": pytest.approx(1.0), "unicorn": None}
    assert result["mAP"] == pytest.approx(1.0)  # the undefined class is left out of the mean
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "unicorn" in warnings[0] and "null" in warnings[0]
    assert "n/a" in out


def test_classes_auto_is_the_sorted_union_of_annotation_names(tmp_path):
    root = write_voc(tmp_path / "voc", {"a": [("zebra", GT10, 0), ("Ant", GT10, 1)], "b": [("zebra", GT10, 0)],
                                        "c": []})
    dets = tmp_path / "dets"
    write_dets(dets, "zebra", [("a", 0.9, GT10), ("b", 0.8, GT10)])
    result = det(root, dets, tmp_path / "r.json", "--classes", "auto")
    assert list(result["per_class"]) == ["Ant", "zebra"]
    assert result["per_class"]["zebra"] == pytest.approx(1.0)
    assert result["per_class"]["Ant"] is None  # its only object is difficult


def test_classes_auto_scores_results_classes_without_ground_truth_null(three_images, tmp_path):
    # issue 23: a detector that knows more classes than the split holds (Cartucho/mAP's sample) is not refused
    root, dets = three_images  # cat: AP 1.0 at IoU 0.5 (hand-computed in the test above)
    write_voc(root, {"a": [("cat", GT10, 0), ("dog", (40, 40, 60, 60), 0)], "b": [("cat", GT10, 0)],
                     "c": [("cat", GT10, 0)]})
    write_dets(dets, "dog", [("a", 0.6, (1, 1, 10, 10))])  # misses the dog entirely: AP 0
    write_dets(dets, "keyboard", [("b", 0.95, (5, 5, 20, 20))])
    write_dets(dets, "mouse", [])
    rc, out, err = run(["det", "--root", str(root), "--detections", str(dets), "--classes", "auto",
                        "--out", str(tmp_path / "r.json")])
    assert rc == 0, err
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["per_class"] == {"cat": pytest.approx(1.0), "dog": 0.0, "keyboard": None, "mouse": None}
    assert result["mAP"] == pytest.approx(0.5)  # (1 + 0) / 2: the classes without ground truth are left out
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "'keyboard', 'mouse'" in warnings[0] and "null" in warnings[0]
    # listed classes stay strict: a results file of a class not listed is still an error naming the file
    rc, _, err = run(["det", "--root", str(root), "--detections", str(dets), "--classes", "cat", "dog"])
    assert rc == 2 and "comp4_det_test_keyboard.txt" in err and "keyboard" in err


def test_default_classes_refuse_an_unknown_annotation_name(tmp_path):
    root = write_voc(tmp_path / "voc", {"a": [("zebra", GT10, 0)]})
    write_dets(tmp_path / "dets", "cat", [])
    rc, _, err = run(["det", "--root", str(root), "--detections", str(tmp_path / "dets")])
    assert rc == 2 and str(root / "Annotations" / "a.xml") in err and "zebra" in err


def _seg_tree(root: Path, masks: dict[str, np.ndarray]) -> Path:
    from visiontasks.data import save_label_png

    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    for image_id, mask in masks.items():
        save_label_png(root / "SegmentationClass" / f"{image_id}.png", mask)
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(masks) + "\n")
    return root


def test_seg_per_class_accuracy_and_background_name(tmp_path):
    from visiontasks.data import save_label_png

    gt = np.zeros((4, 4), np.uint8)
    gt[:, 2:] = 1                      # 8 background, 8 class-1 pixels
    pred = gt.copy()
    pred[0, 2] = 0                     # one class-1 pixel called background
    root = _seg_tree(tmp_path / "voc", {"m": gt})
    save_label_png(tmp_path / "pred" / "m.png", pred)
    rc, out, err = run(["seg", "--root", str(root), "--split", "val", "--classes", "void", "road", "--predictions",
                        str(tmp_path / "pred"), "--out", str(tmp_path / "r.json")])
    assert rc == 0, err
    result = json.loads((tmp_path / "r.json").read_text())
    assert list(result["per_class"]) == ["void", "road"]
    assert result["per_class"]["void"] == pytest.approx(8 / 9) and result["per_class"]["road"] == pytest.approx(7 / 8)
    assert result["per_class_accuracy"] == {"void": 1.0, "road": pytest.approx(7 / 8)}
    save_label_png(tmp_path / "pred" / "m.png", np.zeros((4, 5), np.uint8))
    rc, _, err = run(["seg", "--root", str(root), "--split", "val", "--classes", "road", "--predictions",
                      str(tmp_path / "pred")])
    assert rc == 2 and str(tmp_path / "pred" / "m.png") in err and "5x4" in err and "4x4" in err


def test_coco_cli_prints_the_summary_and_writes_12_stats_and_per_class(tmp_path):
    gt = {"images": [{"id": 1, "width": 100, "height": 100}],
          "categories": [{"id": 3, "name": "x"}, {"id": 4, "name": "y"}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [0, 0, 50, 50]},
                          {"id": 2, "image_id": 1, "category_id": 4, "bbox": [50, 50, 40, 40]}]}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps([{"image_id": 1, "category_id": 3, "bbox": [0, 0, 50, 50],
                                                    "score": 0.9}]))
    rc, out, err = run(["det", "--metric", "coco", "--annotations", str(tmp_path / "gt.json"), "--detections",
                        str(tmp_path / "res.json"), "--out", str(tmp_path / "r.json")])
    assert rc == 0, err
    assert sum(line.lstrip().startswith(("Average Precision", "Average Recall")) for line in out.splitlines()) == 12
    result = json.loads((tmp_path / "r.json").read_text())
    assert {"AP", "ARs", "ARm", "ARl"} <= set(result) and result["iou_type"] == "bbox"
    assert result["per_class"] == {"x": pytest.approx(1.0), "y": 0.0}
    assert result["APs"] is None and "APs" in err  # no small object: undefined, said once
    rc, _, err = run(["det", "--metric", "coco", "--annotations", str(tmp_path / "gt.json"), "--detections",
                      str(tmp_path / "res.json"), "--iou", "0.7"])
    assert rc == 2 and "--iou" in err
