"""tools/eval.py: scores on the real subset, and one clear line (naming the file) for bad input."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

import eval as eval_tool  # noqa: E402
from _common import run_cli  # noqa: E402

from visiontasks.data import VOCDetection, VOCSegmentation, read_label_png, save_label_png  # noqa: E402
from visiontasks.evaluation import write_voc_results  # noqa: E402

EMBEDDED_CLASSES = ["circle", "square", "triangle"]


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    rc = run_cli(eval_tool.main, argv)
    out, err = capsys.readouterr()
    return rc, out, err


def _copy_tree(src: Path, dst: Path, ids: list[str], split: str = "test", seg: bool = False) -> Path:
    for folder in ("Annotations", "JPEGImages", "SegmentationClass", "ImageSets/Main", "ImageSets/Segmentation"):
        (dst / folder).mkdir(parents=True)
    for i in ids:
        shutil.copy(src / "Annotations" / f"{i}.xml", dst / "Annotations")
        shutil.copy(src / "JPEGImages" / f"{i}.jpg", dst / "JPEGImages")
        if seg:
            shutil.copy(src / "SegmentationClass" / f"{i}.png", dst / "SegmentationClass")
    for sub in ("Main", "Segmentation") if seg else ("Main",):
        (dst / "ImageSets" / sub / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return dst


def _gt_as_results(root: Path, split: str, out: Path, classes=None) -> VOCDetection:
    ds = VOCDetection(root, split, classes=classes)
    preds = []
    for i in range(len(ds)):
        t = ds.get_annotation(i)
        preds.append({"boxes": t["boxes"], "labels": t["labels"], "scores": np.linspace(1, 0.5, len(t["labels"]))})
    write_voc_results(out, split, ds.classes, ds.ids, preds)
    return ds


def test_det_ground_truth_scores_one_on_real_subset(coco128_root, tmp_path, capsys):
    _gt_as_results(coco128_root, "test", tmp_path / "dets")
    rc, out, err = _run(["det", "--root", str(coco128_root), "--split", "test", "--detections",
                         str(tmp_path / "dets"), "--metric", "voc12", "--out", str(tmp_path / "r.json")], capsys)
    assert rc == 0, err
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["metric"] == "voc12" and result["mAP"] == pytest.approx(1.0)
    scored = [v for v in result["per_class"].values() if v is not None]
    assert len(result["per_class"]) == 20 and len(scored) >= 10
    assert "mAP (voc12)" in out


def test_det_half_the_boxes_scores_lower(embedded_root, tmp_path, capsys):
    ds = VOCDetection(embedded_root, "test", classes=EMBEDDED_CLASSES)
    preds = []
    for i in range(len(ds)):
        t = ds.get_annotation(i)
        keep = np.arange(len(t["labels"])) % 2 == 0
        preds.append({"boxes": t["boxes"][keep], "labels": t["labels"][keep], "scores": np.ones(int(keep.sum()))})
    write_voc_results(tmp_path / "dets", "test", ds.classes, ds.ids, preds)
    rc, _, err = _run(["det", "--root", str(embedded_root), "--split", "test", "--classes", *EMBEDDED_CLASSES,
                       "--detections", str(tmp_path / "dets"), "--out", str(tmp_path / "r.json")], capsys)
    assert rc == 0, err
    result = json.loads((tmp_path / "r.json").read_text())
    assert 0.3 < result["mAP"] < 0.8  # roughly half of the objects found, all precise


def test_seg_predictions_equal_ground_truth(coco128_root, tmp_path, capsys):
    ds = VOCSegmentation(coco128_root, "val")
    for i in range(0, len(ds)):
        save_label_png(tmp_path / "pred" / f"{ds.ids[i]}.png", read_label_png(ds.mask_path(i)) % 255)
    rc, _, err = _run(["seg", "--root", str(coco128_root), "--split", "val", "--predictions", str(tmp_path / "pred"),
                       "--out", str(tmp_path / "r.json")], capsys)
    assert rc == 0, err
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["mIoU"] == pytest.approx(1.0) and result["pixel_accuracy"] == pytest.approx(1.0)


@pytest.mark.parametrize("method", ["otsu", "split_merge"])
def test_seg_classic_methods_on_real_subset(coco128_root, tmp_path, capsys, method):
    root = _copy_tree(coco128_root, tmp_path / "voc", VOCSegmentation(coco128_root, "val").ids[:6], "val", seg=True)
    rc, out, err = _run(["seg", "--root", str(root), "--split", "val", "--method", method, "--out",
                         str(tmp_path / "r.json"), "--save-predictions", str(tmp_path / "png")], capsys)
    assert rc == 0, err
    result = json.loads((tmp_path / "r.json").read_text())
    assert set(result["per_class"]) == {"background", "foreground"}
    assert 0.0 < result["mIoU"] < 1.0
    assert len(list((tmp_path / "png").glob("*.png"))) == 6
    rc, _, err = _run(["seg", "--root", str(root), "--split", "val", "--method", method, "--oracle-labels",
                       "--out", str(tmp_path / "o.json")], capsys)
    assert rc == 0, err
    assert len(json.loads((tmp_path / "o.json").read_text())["per_class"]) == 21


# ---------------------------------------------------------------- bad input: exit 2, one line, names the file


@pytest.fixture
def small_voc(embedded_root, tmp_path) -> Path:
    ds = VOCDetection(embedded_root, "test", classes=EMBEDDED_CLASSES)
    return _copy_tree(embedded_root, tmp_path / "voc", list(ds.ids[:5]), "test", seg=True)


def _det_args(root: Path, dets: Path) -> list[str]:
    return ["det", "--root", str(root), "--split", "test", "--classes", *EMBEDDED_CLASSES, "--detections", str(dets)]


def _assert_one_line_naming(rc: int, err: str, path: Path | str) -> None:
    assert rc == 2
    assert "Traceback" not in err, err
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.startswith("error:")]  # no tqdm residue
    assert len(lines) == 1, err
    assert str(path) in lines[0], lines[0]


def test_bad_xml(small_voc, tmp_path, capsys):
    xml = sorted((small_voc / "Annotations").glob("*.xml"))[0]
    xml.write_text("<annotation><object><name>circle</name>")
    rc, _, err = _run(_det_args(small_voc, tmp_path), capsys)
    _assert_one_line_naming(rc, err, xml)


def test_hostile_xml(small_voc, tmp_path, capsys):
    xml = sorted((small_voc / "Annotations").glob("*.xml"))[1]
    xml.write_text('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>'
                   "<annotation>&lol2;</annotation>")
    rc, _, err = _run(_det_args(small_voc, tmp_path), capsys)
    _assert_one_line_naming(rc, err, xml)


def test_missing_annotation_listed_in_split(small_voc, tmp_path, capsys):
    xml = sorted((small_voc / "Annotations").glob("*.xml"))[2]
    xml.unlink()
    rc, _, err = _run(_det_args(small_voc, tmp_path), capsys)
    _assert_one_line_naming(rc, err, xml)


def test_det_and_seg_score_without_jpeg_images(small_voc, tmp_path, capsys):
    _gt_as_results(small_voc, "test", tmp_path / "dets", EMBEDDED_CLASSES)
    ids = (small_voc / "ImageSets" / "Main" / "test.txt").read_text().split()
    for i in ids:
        save_label_png(tmp_path / "pred" / f"{i}.png", read_label_png(small_voc / "SegmentationClass" / f"{i}.png") % 255)
    shutil.rmtree(small_voc / "JPEGImages")
    rc, _, err = _run(_det_args(small_voc, tmp_path / "dets") + ["--out", str(tmp_path / "d.json")], capsys)
    assert rc == 0, err
    assert json.loads((tmp_path / "d.json").read_text())["mAP"] == pytest.approx(1.0)
    rc, _, err = _run(["seg", "--root", str(small_voc), "--split", "test", "--classes", *EMBEDDED_CLASSES,
                       "--predictions", str(tmp_path / "pred"), "--out", str(tmp_path / "s.json")], capsys)
    assert rc == 0, err
    result = json.loads((tmp_path / "s.json").read_text())
    assert result["mIoU"] == pytest.approx(1.0)
    assert set(result["per_class_accuracy"]) == {"background", *EMBEDDED_CLASSES}


def test_results_line_does_not_parse(small_voc, tmp_path, capsys):
    _gt_as_results(small_voc, "test", tmp_path / "dets", EMBEDDED_CLASSES)
    f = tmp_path / "dets" / "comp4_det_test_square.txt"
    f.write_text(f.read_text() + "000001 0.5 1 2 three 4\n")
    rc, _, err = _run(_det_args(small_voc, tmp_path / "dets"), capsys)
    _assert_one_line_naming(rc, err, f)


def test_results_unknown_class(small_voc, tmp_path, capsys):
    _gt_as_results(small_voc, "test", tmp_path / "dets", EMBEDDED_CLASSES)
    f = tmp_path / "dets" / "comp4_det_test_unicorn.txt"
    f.write_text("")
    rc, _, err = _run(_det_args(small_voc, tmp_path / "dets"), capsys)
    _assert_one_line_naming(rc, err, f)


def test_mask_of_wrong_size(small_voc, tmp_path, capsys):
    ds = VOCSegmentation(small_voc, "test", classes=EMBEDDED_CLASSES)
    for i in range(len(ds)):
        save_label_png(tmp_path / "pred" / f"{ds.ids[i]}.png", np.zeros((10, 12), np.uint8))
    rc, _, err = _run(["seg", "--root", str(small_voc), "--split", "test", "--classes", *EMBEDDED_CLASSES,
                       "--predictions", str(tmp_path / "pred")], capsys)
    _assert_one_line_naming(rc, err, tmp_path / "pred" / f"{ds.ids[0]}.png")


def test_det_coco_results_json(coco128_annotations, tmp_path, capsys):
    import json as _json

    gt = _json.loads((coco128_annotations / "instances_val2017.json").read_text())
    results = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
               for a in gt["annotations"]]
    (tmp_path / "dets.json").write_text(_json.dumps(results))
    rc, out, err = _run(["det", "--metric", "coco", "--annotations", str(coco128_annotations / "instances_val2017.json"),
                         "--detections", str(tmp_path / "dets.json"), "--out", str(tmp_path / "r.json")], capsys)
    assert rc == 0, err
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["metric"] == "coco" and result["mAP"] == pytest.approx(1.0) and result["AP50"] == pytest.approx(1.0)


def test_det_coco_needs_annotations(tmp_path, capsys):
    rc, _, err = _run(["det", "--metric", "coco", "--detections", str(tmp_path / "d.json")], capsys)
    assert rc == 2 and "--annotations" in err
