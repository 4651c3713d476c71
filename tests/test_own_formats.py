"""YOLO txt and LabelMe readers, and the converter (visiontasks.data.yolo_txt, .labelme, .convert)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visiontasks.data import COCODetection, VOCDetection
from visiontasks.data.convert import convert
from visiontasks.data.factory import build_dataset, dataset_classes
from visiontasks.data.labelme import LabelMeDetection, LabelMeSegmentation
from visiontasks.data.yolo_txt import YOLODetection
from visiontasks.errors import InputError

CLASSES = ("cat", "dog")


def _image(path: Path, w: int, h: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (w, h), (90, 120, 30)).save(path)


def make_voc(root: Path, objects: dict[str, tuple[int, int, list[tuple[str, int, int, int, int]]]]) -> Path:
    """A VOC-layout folder: id -> (W, H, [(class, xmin, ymin, xmax, ymax) 1-based inclusive])."""
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    for image_id, (w, h, objs) in objects.items():
        _image(root / "JPEGImages" / f"{image_id}.jpg", w, h)
        body = "".join(f"<object><name>{n}</name><difficult>0</difficult><bndbox><xmin>{a}</xmin><ymin>{b}</ymin>"
                       f"<xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>" for n, a, b, c, d in objs)
        (root / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><size><width>{w}</width><height>{h}</height><depth>3</depth></size>{body}</annotation>")
    (root / "ImageSets" / "Main" / "train.txt").write_text("".join(f"{i}\n" for i in objects))
    return root


VOC_OBJECTS = {"a": (64, 48, [("cat", 1, 1, 64, 48), ("dog", 10, 5, 30, 20)]),
               "b": (100, 37, [("dog", 33, 2, 34, 9)]),
               "c": (50, 50, [])}


def make_yolo(root: Path, labels: dict[str, str], names: object = ("cat", "dog"), sizes=None) -> Path:
    """A YOLO folder: images/train/<id>.png (32x16 unless ``sizes``), labels/train/<id>.txt (None: no file)."""
    for image_id, text in labels.items():
        w, h = (sizes or {}).get(image_id, (32, 16))
        _image(root / "images" / "train" / f"{image_id}.png", w, h)
        if text is not None:
            (root / "labels" / "train").mkdir(parents=True, exist_ok=True)
            (root / "labels" / "train" / f"{image_id}.txt").write_text(text)
    names_yaml = json.dumps(names if isinstance(names, dict) else list(names))
    (root / "data.yaml").write_text(f"path: .\ntrain: images/train\nval: images/train\nnames: {names_yaml}\n")
    return root


def test_voc_to_yolo_round_trip_gives_the_same_boxes(tmp_path: Path) -> None:
    voc = VOCDetection(make_voc(tmp_path / "voc", VOC_OBJECTS), "train", classes=CLASSES)
    convert(voc, "yolo", tmp_path / "yolo", "train")
    yolo = YOLODetection(tmp_path / "yolo", "train")
    assert yolo.classes == CLASSES and yolo.ids == voc.ids
    for i in range(len(voc)):
        a, b = voc.get_annotation(i), yolo.get_annotation(i)
        assert torch.equal(a["labels"], b["labels"])
        assert torch.allclose(a["boxes"], b["boxes"], atol=1e-3), (a["boxes"], b["boxes"])
    # hand check of image a's dog: VOC (10, 5, 30, 20) 1-based -> 0-based (9, 4, 29, 19)
    assert yolo.get_annotation(0)["boxes"][1].tolist() == pytest.approx([9, 4, 29, 19], abs=1e-3)
    line = (tmp_path / "yolo" / "labels" / "train" / "a.txt").read_text().splitlines()[1].split()
    assert [float(v) for v in line] == pytest.approx([1, 19 / 64, 11.5 / 48, 20 / 64, 15 / 48], abs=1e-6)


def test_yolo_reader_pixels_names_dict_and_missing_label_file(tmp_path: Path) -> None:
    root = make_yolo(tmp_path, {"x": "1 0.5 0.5 0.25 0.5\n\n0 0.25 0.25 0.5 0.5\n", "y": None, "z": ""},
                     names={0: "cat", 1: "dog"})
    ds = build_dataset({"dataset": "yolo", "root": str(root)}, "train", train=False)
    assert dataset_classes({"dataset": "yolo", "root": str(root)}) == CLASSES
    ann = ds.get_annotation(ds.ids.index("x"))
    assert ann["labels"].tolist() == [2, 1]
    assert ann["boxes"].tolist() == [[12, 4, 20, 12], [0, 0, 16, 8]]  # W 32, H 16
    for image_id in ("y", "z"):  # no label file / an empty one: an image without objects
        assert ds.get_annotation(ds.ids.index(image_id))["boxes"].shape == (0, 4)
    image, target = ds[0]
    assert image.shape[-2:] == (16, 32)


def test_yolo_roboflow_paths_and_polygon_rows(tmp_path: Path) -> None:
    _image(tmp_path / "train" / "images" / "p.jpg", 20, 10)
    (tmp_path / "train" / "labels").mkdir(parents=True)
    (tmp_path / "train" / "labels" / "p.txt").write_text("0 0.1 0.2 0.5 0.2 0.3 0.8\n")
    (tmp_path / "data.yaml").write_text("train: ../train/images\nval: ../valid/images\nnc: 1\nnames: ['cat']\n")
    ds = YOLODetection(tmp_path, "train")
    assert ds.get_annotation(0)["boxes"][0].tolist() == pytest.approx([2, 2, 10, 8])


@pytest.mark.parametrize("row, words", [
    ("0 0.5 0.5 1.2 0.1", "[0, 1]"),
    ("0 0.5 -0.1 0.2 0.1", "[0, 1]"),
    ("0 0.5 0.5 0.2", "4 columns"),
    ("0 0.5 0.5 0.2 0.1 0.3", "6 columns"),
    ("2 0.5 0.5 0.2 0.1", "class index 2"),
    ("0 0.5 abc 0.2 0.1", "not numbers"),
])
def test_yolo_bad_row_names_file_and_line(tmp_path: Path, row: str, words: str) -> None:
    root = make_yolo(tmp_path, {"x": f"0 0.5 0.5 0.1 0.1\n{row}\n"})
    with pytest.raises(InputError) as err:
        YOLODetection(root, "train")
    message = str(err.value)
    assert message.startswith(str(root / "labels" / "train" / "x.txt") + ": line 2:") and words in message
    assert "\n" not in message


def test_yolo_label_file_without_image(tmp_path: Path) -> None:
    root = make_yolo(tmp_path, {"x": "0 0.5 0.5 0.1 0.1\n"})
    (root / "labels" / "train" / "ghost.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    with pytest.raises(InputError, match="ghost.txt: label file without an image"):
        YOLODetection(root, "train")


def test_yolo_unknown_split_and_missing_yaml(tmp_path: Path) -> None:
    root = make_yolo(tmp_path, {"x": ""})
    with pytest.raises(InputError, match="split 'test' not named"):
        YOLODetection(root, "test")
    with pytest.raises(InputError, match="data.yaml not found"):
        YOLODetection(tmp_path / "nowhere", "train")


def make_labelme(root: Path, name: str, shapes: list[dict], w: int = 40, h: int = 30, split: str = "train") -> Path:
    folder = root / split
    _image(folder / f"{name}.png", w, h)
    doc = {"version": "5.2.1", "shapes": shapes, "imagePath": f"{name}.png", "imageHeight": h, "imageWidth": w,
           "imageData": None}
    (folder / f"{name}.json").write_text(json.dumps(doc))
    return root


def _shape(label: str, points: list, kind: str) -> dict:
    return {"label": label, "points": points, "shape_type": kind, "group_id": None, "flags": {}}


def test_labelme_rectangles_polygons_and_masks(tmp_path: Path) -> None:
    root = make_labelme(tmp_path, "one", [
        _shape("dog", [[30, 20], [10, 5]], "rectangle"),  # corners in any order
        _shape("cat", [[2, 3], [8, 3], [8, 9], [2, 9]], "polygon"),
        _shape("cat", [[20, 20]], "point"),  # no area: skipped
    ])
    ds = LabelMeDetection(root, "train")
    assert ds.classes == CLASSES  # sorted labels found
    ann = ds.get_annotation(0)
    assert ann["labels"].tolist() == [2, 1]
    assert ann["boxes"].tolist() == [[10, 5, 30, 20], [2, 3, 8, 9]]
    mask = LabelMeSegmentation(root, "train").get_annotation(0)["mask"]
    assert mask.shape == (30, 40)
    assert mask[5, 5] == 1 and mask[10, 20] == 2 and mask[25, 35] == 0 and mask[3, 2] == 1 and mask[2, 2] == 0
    seg = build_dataset({"dataset": "labelme", "root": str(root)}, "train", train=False, task="segmentation")
    assert seg.get_annotation(0)["mask"].eq(mask).all()


def test_labelme_errors_name_the_file(tmp_path: Path) -> None:
    root = make_labelme(tmp_path, "one", [_shape("cat", [[1, 1]], "rectangle")])
    with pytest.raises(InputError, match=r"one.json: shape #0 \(rectangle\) has 1 points"):
        LabelMeDetection(root, "train", classes=CLASSES)
    root = make_labelme(tmp_path / "b", "two", [_shape("cow", [[1, 1], [4, 4]], "rectangle")])
    with pytest.raises(InputError, match="two.json: shape #0 has label 'cow'"):
        LabelMeDetection(root, "train", classes=CLASSES)
    (root / "train" / "two.png").unlink()
    with pytest.raises(InputError, match="two.json: its imagePath 'two.png'"):
        LabelMeDetection(root, "train", classes=("cow",))


def test_convert_labelme_to_voc_and_yolo_to_coco(tmp_path: Path) -> None:
    root = make_labelme(tmp_path / "lm", "one", [_shape("dog", [[10.5, 5], [30, 20]], "rectangle"),
                                                  _shape("cat", [[2, 3], [8, 3], [8, 9]], "polygon")])
    lm = LabelMeDetection(root, "train")
    convert(lm, "voc", tmp_path / "voc", "train")
    voc = VOCDetection(tmp_path / "voc", "train", classes=lm.classes)
    assert voc.get_annotation(0)["boxes"].tolist() == [[10.5, 5, 30, 20], [2, 3, 8, 9]]
    assert voc.get_annotation(0)["labels"].tolist() == [2, 1]
    convert(LabelMeSegmentation(root, "train"), "voc", tmp_path / "vocseg", "train")
    assert (tmp_path / "vocseg" / "SegmentationClass" / "one.png").is_file()

    yroot = make_yolo(tmp_path / "y", {"x": "1 0.5 0.5 0.25 0.5\n", "y": None})
    coco_json = convert(YOLODetection(yroot, "train"), "coco", tmp_path / "coco", "train")
    coco = COCODetection(tmp_path / "coco" / "images", coco_json)
    assert coco.classes == CLASSES
    got = {coco.image_path(i).stem: coco.get_annotation(i)["boxes"].tolist() for i in range(len(coco))}
    assert got == {"x": [[12, 4, 20, 12]], "y": []}
    doc = json.loads(coco_json.read_text())
    assert doc["annotations"][0]["bbox"] == [12, 4, 8, 8] and doc["annotations"][0]["area"] == 64


def test_convert_tool_voc_to_yolo_to_voc(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from visiontasks.cli import load_tool

    tool = load_tool("convert")
    run_cli = __import__("sys").modules["_common"].run_cli
    voc_root = make_voc(tmp_path / "voc", VOC_OBJECTS)
    assert run_cli(tool.main, ["--dataset", "voc", "--root", str(voc_root), "--split", "train", "--classes", *CLASSES,
                               "--to", "yolo", "--out", str(tmp_path / "y")]) == 0
    assert run_cli(tool.main, ["--dataset", "yolo", "--root", str(tmp_path / "y"), "--split", "train", "--to", "voc",
                               "--out", str(tmp_path / "back")]) == 0
    a, b = VOCDetection(voc_root, "train", classes=CLASSES), VOCDetection(tmp_path / "back", "train", classes=CLASSES)
    for i in range(len(a)):
        assert torch.allclose(a.get_annotation(i)["boxes"], b.get_annotation(i)["boxes"], atol=1e-3)
    capsys.readouterr()
    assert run_cli(tool.main, ["--dataset", "yolo", "--root", str(tmp_path / "none"), "--split", "train",
                               "--to", "voc", "--out", str(tmp_path / "z")]) == 2
    assert "data.yaml not found" in capsys.readouterr().err


def test_eval_checkpoint_scores_a_yolo_split_as_its_voc_original(embedded_root: Path, tmp_path: Path) -> None:
    import sys

    from visiontasks.api import DEFAULT_WEIGHTS
    from visiontasks.data import EMBEDDED_CLASSES
    from visiontasks.cli import load_tool

    tool = load_tool("eval")
    run_cli = sys.modules["_common"].run_cli
    test = VOCDetection(embedded_root, "test", classes=EMBEDDED_CLASSES)
    # YOLO txt has no 'difficult' flag (VOC ignores those objects when scoring): images without one
    ids = [test.ids[i] for i in range(len(test)) if not test.get_annotation(i)["difficult"].any()][:6]
    (embedded_root / "ImageSets" / "Main" / "yolo_probe.txt").write_text("\n".join(ids) + "\n")
    convert(VOCDetection(embedded_root, "yolo_probe", classes=EMBEDDED_CLASSES), "yolo", tmp_path / "y", "val")
    scores = {}
    for kind, root, split in (("voc", embedded_root, "yolo_probe"), ("yolo", tmp_path / "y", "val")):
        out = tmp_path / f"{kind}.json"
        argv = ["det", "--checkpoint", str(DEFAULT_WEIGHTS), "--dataset", kind, "--root", str(root), "--split", split,
                "--out", str(out)]
        assert run_cli(tool.main, argv) == 0
        scores[kind] = json.loads(out.read_text())["mAP"]
    assert scores["yolo"] == pytest.approx(scores["voc"], abs=1e-6), scores
    assert run_cli(tool.main, ["det", "--dataset", "yolo", "--root", str(tmp_path / "y"), "--split", "val",
                               "--detections", str(tmp_path)]) == 2


def test_yolo_txt_list_split_of_a_shared_folder(tmp_path: Path) -> None:
    root = make_yolo(tmp_path, {"x": "0 0.5 0.5 0.5 0.5\n", "y": "1 0.5 0.5 0.25 0.25\n"})
    (root / "val.txt").write_text("./images/train/y.png\n")
    (root / "data.yaml").write_text("train: images/train\nval: val.txt\nnames: [cat, dog]\n")
    val = YOLODetection(root, "val")  # x's label file is not an orphan: the list names a subset
    assert val.ids == ["y"] and val.get_annotation(0)["boxes"].tolist() == [[12, 6, 20, 10]]


def test_labelme_detection_through_the_training_transforms(tmp_path: Path) -> None:
    root = make_labelme(tmp_path, "one", [_shape("dog", [[15, 20], [5, 5]], "rectangle")])
    ds = build_dataset({"dataset": "labelme", "root": str(root), "hflip_prob": 1.0}, "train", train=True)
    image, target = ds[0]
    assert image.shape[-2:] == (30, 40)
    assert target["labels"].tolist() == [2 - 1]  # the only label found: 'dog' is class 1
    assert target["boxes"].tolist() == [[24, 5, 34, 20]]  # always flipped, x -> W - 1 - x (data/transforms.py)
