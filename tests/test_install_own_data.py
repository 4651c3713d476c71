"""Your own data, end to end: a VOC-layout folder with its own class names and a COCO-json dataset,
each through train_det.py → eval.py det --checkpoint → predict, the names reaching every output."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

import eval as eval_tool  # noqa: E402
import predict as predict_tool  # noqa: E402
import train_det  # noqa: E402
from _common import run_cli  # noqa: E402

import visiontasks  # noqa: E402

CLASSES = ["widget", "gizmo"]  # not VOC's
FAST = ["train.max_iters=2", "train.batch_size=2", "train.log_every=1", "train.checkpoint_every=2",
        "train.warmup_iters=0", "data.num_workers=0", "model.min_size=96", "model.max_size=96",
        "model.num_classes=3", "data.hflip_prob=0.0"]


def _objects(k: int) -> list[tuple[str, tuple[int, int, int, int]]]:
    """Two objects per image, 0-based inclusive boxes: a widget (red) and a gizmo (blue)."""
    return [("widget", (5 + 3 * k, 8, 40 + 3 * k, 50)), ("gizmo", (60, 20 + 2 * k, 110, 70 + 2 * k))]


def _image(k: int, path: Path) -> None:
    img = np.full((96, 128, 3), 235, np.uint8)
    for name, (x0, y0, x1, y1) in _objects(k):
        img[y0:y1 + 1, x0:x1 + 1] = (200, 30, 30) if name == "widget" else (30, 30, 200)
    Image.fromarray(img).save(path)


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("own_voc")
    for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / folder).mkdir(parents=True)
    ids = [f"img{k}" for k in range(6)]
    for k, image_id in enumerate(ids):
        _image(k, root / "JPEGImages" / f"{image_id}.jpg")
        objs = "".join(f"<object><name>{n}</name><difficult>0</difficult><bndbox><xmin>{x0 + 1}</xmin>"
                       f"<ymin>{y0 + 1}</ymin><xmax>{x1 + 1}</xmax><ymax>{y1 + 1}</ymax></bndbox></object>"
                       for n, (x0, y0, x1, y1) in _objects(k))
        (root / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><size><width>128</width><height>96</height><depth>3</depth></size>{objs}</annotation>")
    (root / "ImageSets/Main/trainval.txt").write_text("\n".join(ids[:4]) + "\n")
    (root / "ImageSets/Main/test.txt").write_text("\n".join(ids[4:]) + "\n")
    return root


@pytest.fixture(scope="module")
def coco_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("own_coco")
    (root / "images").mkdir()
    images, anns = [], []
    for k in range(4):
        _image(k, root / "images" / f"p{k}.png")
        images.append({"id": k + 1, "file_name": f"p{k}.png", "width": 128, "height": 96})
        for name, (x0, y0, x1, y1) in _objects(k):
            w, h = x1 - x0 + 1, y1 - y0 + 1
            anns.append({"id": len(anns) + 1, "image_id": k + 1, "category_id": 7 if name == "widget" else 9,
                         "bbox": [x0, y0, w, h], "area": w * h, "iscrowd": 0})
    gt = {"images": images, "annotations": anns,
          "categories": [{"id": 7, "name": "widget"}, {"id": 9, "name": "gizmo"}]}
    (root / "gt.json").write_text(json.dumps(gt))
    return root / "images", root / "gt.json"


def _predict_names(run: Path, image: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    predictor = visiontasks.load_model(run, preset="evaluate")
    assert list(predictor.classes) == CLASSES  # for coco: from the json's categories, in id order
    predictor.score_thresh = 0.0  # two iterations of training: show every box
    result = predictor.predict(image)
    assert len(result) > 0 and set(result.label_names) <= set(CLASSES)
    assert run_cli(predict_tool.main, [str(image), "--run", str(run), "--out", str(tmp_path / "preds")]) == 0
    assert (tmp_path / "preds" / f"{image.stem}_pred.png").is_file()
    capsys.readouterr()


def test_voc_layout_with_own_class_names(voc_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    rc = run_cli(train_det.main, ["--out", str(run), "--device", "cpu", *FAST, "data.dataset=voc",
                                  f"data.root={voc_root}", f"data.classes=[{','.join(CLASSES)}]"])
    assert rc == 0, capsys.readouterr().err
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["per_class"]) == set(CLASSES)
    rc = run_cli(eval_tool.main, ["det", "--checkpoint", str(run / "checkpoint_last.pt"), "--root", str(voc_root),
                                  "--split", "test", "--write-results", str(tmp_path / "comp4"),
                                  "--out", str(tmp_path / "r.json")])
    assert rc == 0, capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "comp4").glob("*.txt")) == sorted(
        f"comp4_det_test_{c}.txt" for c in CLASSES)
    assert set(json.loads((tmp_path / "r.json").read_text())["per_class"]) == set(CLASSES)
    # the results files score again with --classes naming the user's classes
    rc = run_cli(eval_tool.main, ["det", "--root", str(voc_root), "--split", "test", "--classes", *CLASSES,
                                  "--detections", str(tmp_path / "comp4"), "--out", str(tmp_path / "r2.json")])
    assert rc == 0, capsys.readouterr().err
    a, b = (json.loads((tmp_path / n).read_text()) for n in ("r.json", "r2.json"))
    assert a["mAP"] == pytest.approx(b["mAP"], abs=1e-6)
    _predict_names(run, voc_root / "JPEGImages" / "img4.jpg", tmp_path, capsys)


def test_coco_json_dataset(coco_files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images, gt = coco_files
    run = tmp_path / "run"
    rc = run_cli(train_det.main, ["--out", str(run), "--device", "cpu", *FAST, "data.dataset=coco",
                                  f"data.images={images}", f"data.annotations={gt}", "eval.metric=coco"])
    assert rc == 0, capsys.readouterr().err
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["metric"] == "coco"
    rc = run_cli(eval_tool.main, ["det", "--checkpoint", str(run / "checkpoint_last.pt"), "--metric", "coco",
                                  "--images", str(images), "--annotations", str(gt), "--out", str(tmp_path / "r.json")])
    assert rc == 0, capsys.readouterr().err
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["metric"] == "coco" and set(result["per_class"]) == set(CLASSES)
    _predict_names(run, images / "p0.png", tmp_path, capsys)
