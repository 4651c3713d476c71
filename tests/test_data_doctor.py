"""The data doctor (visiontasks.data.doctor, tools/check_data.py): each finding on a split built to have it."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from test_own_formats import _shape, make_labelme, make_voc, make_yolo

from visiontasks.data.doctor import diagnose, exit_code, format_table
from visiontasks.data.doctor_read import read_records

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("cat", "dog")
COCO128 = REPO.parent / "shared" / "data" / "coco128-voc" / "VOC2007"
CLEAN = {"a": (64, 48, [("cat", 1, 1, 30, 40), ("dog", 10, 5, 30, 20)]),
         "b": (100, 37, [("dog", 33, 2, 60, 30)]),
         "c": (50, 50, [])}


def doctor(root: Path, kind: str = "voc", split: str = "train", **kw):
    classes, records = read_records(kind, root, split, CLASSES if kind == "voc" else None)
    return diagnose(records, classes, inclusive=kind == "voc", **kw)


def counts(report) -> dict[str, object]:
    return {f.name.split(" (")[0]: f.count for f in report.findings}


def severities(report) -> dict[str, str]:
    return {f.name.split(" (")[0]: f.severity for f in report.findings}


def test_clean_split_counts_and_passes(tmp_path: Path) -> None:
    report = doctor(make_voc(tmp_path / "v", CLEAN))
    c = counts(report)
    assert (c["images"], c["objects"], c["images without objects"]) == (3, 3, 1)
    assert report.per_class == {"cat": 1, "dog": 2}
    for name in ("missing image files", "unreadable image files", "degenerate boxes", "tiny boxes",
                 "exact duplicate boxes", "boxes wholly outside the image", "boxes partly outside the image"):
        assert c[name] == 0, name
    assert c["image size H x W"] == "37x50 / 48x64 / 50x100"  # H sorted 37, 48, 50; W 50, 64, 100
    assert exit_code(report) == 0


@pytest.mark.parametrize("objects, row, n, severity", [
    ({"a": (64, 48, [("cat", 10, 5, 10, 20)])}, "degenerate boxes", 1, "FAIL"),  # xmin = xmax: zero width
    ({"a": (64, 48, [("cat", 70, 5, 80, 20)])}, "boxes wholly outside the image", 1, "FAIL"),
    ({"a": (64, 48, [("cat", 50, 5, 70, 20), ("dog", 1, 1, 64, 48)])}, "boxes partly outside the image", 1, "warn"),
    ({"a": (64, 48, [("cat", 10, 10, 15, 30), ("dog", 1, 1, 9, 9)])}, "tiny boxes", 1, "warn"),  # 5 px; 8 px: not
    ({"a": (64, 48, [("cat", 3, 3, 30, 30), ("cat", 3, 3, 30, 30), ("dog", 3, 3, 30, 30)])},
     "exact duplicate boxes", 1, "warn"),
    ({"a": (64, 48, [("cow", 3, 3, 30, 30)])}, "annotation files the reader refuses", 1, "FAIL"),
])
def test_each_box_finding(tmp_path: Path, objects: dict, row: str, n: int, severity: str) -> None:
    report = doctor(make_voc(tmp_path / "v", objects))
    assert counts(report)[row] == n and severities(report)[row] == severity
    assert exit_code(report) == int(severity == "FAIL")


def test_tiny_box_boundary_is_hand_computed(tmp_path: Path) -> None:
    # 1-based 1..9 is 0-based 0..8: 8 px wide, not tiny; 1..8 is 7 px, tiny
    report = doctor(make_voc(tmp_path / "v", {"a": (64, 48, [("cat", 1, 1, 9, 9), ("dog", 1, 1, 8, 20)])}))
    assert counts(report)["tiny boxes"] == 1


def test_missing_unreadable_and_resized_images(tmp_path: Path) -> None:
    root = make_voc(tmp_path / "v", CLEAN)
    (root / "JPEGImages" / "a.jpg").unlink()
    (root / "JPEGImages" / "b.jpg").write_bytes(b"not an image")
    report = doctor(root)
    c, s = counts(report), severities(report)
    assert (c["missing image files"], c["unreadable image files"]) == (1, 1)
    assert s["missing image files"] == s["unreadable image files"] == "FAIL" and exit_code(report) == 1
    root2 = make_voc(tmp_path / "w", {"a": (64, 48, [("cat", 1, 1, 30, 40)])})
    from PIL import Image
    Image.new("RGB", (60, 48)).save(root2 / "JPEGImages" / "a.jpg")
    assert counts(doctor(root2))["image size differs from its annotation"] == 1


def test_class_imbalance_and_no_objects(tmp_path: Path) -> None:
    objs = [("dog", 1 + k, 1, 20 + k, 20) for k in range(11)] + [("cat", 1, 1, 30, 30)]
    report = doctor(make_voc(tmp_path / "v", {"a": (64, 48, objs)}))
    assert counts(report)["class imbalance"] == 1 and report.row("class imbalance (none, or < 1/10 of the "
                                                                  "largest)").example == "cat"
    objs = objs[:-1] + [("cat", 1, 1, 30, 30), ("cat", 2, 1, 30, 30)]  # 10 / 2 = 5: balanced enough
    assert counts(doctor(make_voc(tmp_path / "w", {"a": (64, 48, objs)})))["class imbalance"] == 0
    empty = doctor(make_voc(tmp_path / "e", {"a": (64, 48, [])}))
    assert severities(empty)["objects"] == "FAIL" and exit_code(empty) == 1


def test_anchor_coverage_hand_anchor(tmp_path: Path) -> None:
    root = make_voc(tmp_path / "v", {"a": (64, 48, [("cat", 1, 1, 11, 11), ("dog", 1, 1, 11, 31)])})

    def one_anchor(h: int, w: int):  # the image doubled; one 20x20 anchor at the corner
        return torch.tensor([[0.0, 0.0, 20.0, 20.0]]), (2.0, 2.0)

    report = doctor(root, anchor_fn=one_anchor)
    # box 0: 0..10 -> 0..20: IoU 1; box 1: 0..10 x 0..30 -> 20x60: IoU 400 / 1200 = 1/3 < 0.5
    assert counts(report)["boxes no anchor matches at IoU >= 0.5"] == 1


def test_anchor_fn_of_the_default_config(tmp_path: Path) -> None:
    from visiontasks.config import load_config
    from visiontasks.detection.anchor_cover import anchor_fn
    from visiontasks.registry import get_model

    kw = dict(load_config(REPO / "configs" / "detection" / "default.yaml")["model"])
    fn = anchor_fn(get_model(kw.pop("name"), **kw))
    anchors, (sx, sy) = fn(100, 160)  # min_size = max_size = 256: the longer side 160 -> 256, scale 1.6
    assert (sx, sy) == (256 / 160, 160 / 100)
    assert len(anchors) and anchors[:, :2].min() >= 0 and anchors[:, 2].max() <= 256 and anchors[:, 3].max() <= 160
    box = (anchors[0] / torch.tensor([sx, sy, sx, sy])).tolist()  # an anchor mapped back is covered
    root = make_voc(tmp_path / "v", {"a": (160, 100, [("cat", box[0] + 1, box[1] + 1, box[2] + 1, box[3] + 1)])})
    assert counts(doctor(root, anchor_fn=fn))["boxes no anchor matches at IoU >= 0.5"] == 0


def test_yolo_bad_row_orphan_label_and_labelme(tmp_path: Path) -> None:
    root = make_yolo(tmp_path / "y", {"x": "0 0.5 0.5 0.5 0.5\n5 0.5 0.5 0.1 0.1\n", "y": "1 0.5 0.5 0.5 0.5\n",
                                      "z": None})
    (root / "labels" / "train" / "ghost.txt").write_text("")
    report = doctor(root, "yolo")
    refused = report.row("annotation files the reader refuses")
    assert refused.count == 2 and refused.severity == "FAIL"
    assert counts(report)["images without objects"] == 1  # z (no label file); x is refused
    lm = make_labelme(tmp_path / "l", "one", [_shape("cat", [[1, 1], [1, 9]], "rectangle"),
                                              _shape("dog", [[2, 3], [30, 3], [30, 20]], "polygon")])
    report = doctor(lm, "labelme")
    assert counts(report)["degenerate boxes"] == 1 and counts(report)["objects"] == 2


def test_coco_degenerate_boxes_warn_because_the_reader_drops_them(tmp_path: Path) -> None:
    from PIL import Image
    (tmp_path / "images").mkdir()
    Image.new("RGB", (40, 30)).save(tmp_path / "images" / "1.jpg")
    doc = {"images": [{"id": 1, "file_name": "1.jpg", "height": 30, "width": 40}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [5, 5, 0, 10], "area": 0, "iscrowd": 0},
                           {"id": 2, "image_id": 1, "category_id": 1, "bbox": [5, 5, 10, 10], "area": 100,
                            "iscrowd": 0}],
           "categories": [{"id": 1, "name": "cat"}]}
    (tmp_path / "train.json").write_text(json.dumps(doc))
    classes, records = read_records("coco", tmp_path, "train")
    report = diagnose(records, classes, drops_degenerate=True)
    assert counts(report)["degenerate boxes"] == 1 and severities(report)["degenerate boxes"] == "warn"
    assert exit_code(report) == 0


def _tool(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """Runs tools/check_data.py in this process as ``visiontasks check-data`` does: (exit code, stdout, stderr)."""
    from visiontasks import cli

    code = cli.main(["check-data", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_tool_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = make_voc(tmp_path / "v", {"a": (64, 48, [("aeroplane", 1, 1, 30, 40)])})
    code, out, _ = _tool(capsys, "--dataset", "voc", "--root", str(root), "--split", "train")
    assert code == 0 and "the split would train (exit code 0)" in out
    (root / "JPEGImages" / "a.jpg").unlink()
    code, out, _ = _tool(capsys, "--dataset", "voc", "--root", str(root), "--split", "train")
    assert code == 1 and re.search(r"missing image files\s+1\s+FAIL", out)
    code, _, err = _tool(capsys, "--dataset", "voc", "--root", str(root), "--split", "nosuch")
    assert code == 2 and err.strip().count("\n") == 0 and "nosuch" in err


def test_coco128_table_matches_docs() -> None:
    if not COCO128.is_dir():
        pytest.skip(f"{COCO128} absent (the shared coco128-voc data)")
    classes, records = read_records("voc", COCO128, "trainval")
    report = diagnose(records, classes, inclusive=True)
    assert counts(report)["images"] == 128
    assert counts(report)["objects"] == sum(report.per_class.values())
    table = format_table(report)
    doc = (REPO / "docs" / "OWN_DATA.md").read_text(encoding="utf-8")
    body = "\n".join(line for line in table.splitlines()[2:] if line.strip())
    assert body in "\n".join(line for line in doc.splitlines() if line.strip()), \
        "docs/OWN_DATA.md's coco128-voc table differs from the doctor's: rerun the command there"


def test_training_check_refuses_degenerate_boxes_and_warns_of_duplicates(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture) -> None:
    from visiontasks.data import VOCDetection
    from visiontasks.data.check import check_boxes, check_split
    from visiontasks.errors import InputError

    bad = VOCDetection(make_voc(tmp_path / "v", {"a": (64, 48, [("cat", 10, 5, 10, 20)])}), "train", classes=CLASSES)
    with pytest.raises(InputError, match=r"image 'a' of split 'train': object #0 box \[9.0, 4.0, 9.0, 19.0\] has zero"):
        check_split(bad, "train")
    dup = VOCDetection(make_voc(tmp_path / "w", {"a": (64, 48, [("cat", 3, 3, 9, 9), ("cat", 3, 3, 9, 9)])}), "train",
                       classes=CLASSES)
    capsys.readouterr()
    assert check_boxes(dup, "train") == 2
    assert "1 exact duplicate box(es) (first in image 'a')" in capsys.readouterr().err


def test_wall_time_estimate_after_the_first_window(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from visiontasks.engine import logger as logger_module

    clock = iter([0.0, 3.0, 5.0, 7.0, 9.0, 11.0])  # t0, then one reading per logged row
    monkeypatch.setattr(logger_module.time, "perf_counter", lambda: next(clock))
    log = logger_module.TrainLogger(tmp_path, max_iters=10, log_every=2)
    for it in range(1, 11):
        log.log_iteration(it, 0.1, {"loss": 1.0})
    log.close()
    out = capsys.readouterr()
    lines = [ln for ln in (out.out + out.err).splitlines() if "estimated wall time" in ln]
    # 2 iterations in 3 s: 1.5 s/iter, 8 left -> 12 s; printed once
    assert len(lines) == 1 and "estimated wall time: 12 s for the 8 iterations left (1.500 s/iter over the last 2" \
        in lines[0]
