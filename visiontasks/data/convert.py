"""Writes a detection split of any reader (VOC, COCO, YOLO txt, LabelMe) as VOC layout, COCO json or YOLO txt.

The source is a dataset of :mod:`visiontasks.data` (``ids``, ``classes``, ``image_path(i)``,
``expected_size(i)``, ``get_annotation(i)``); its boxes are 0-based continuous ``xyxy``.

- VOC: ``Annotations/<id>.xml`` (1-based: ``xmin = x0 + 1``, integers written as such),
  ``JPEGImages/<id>.jpg`` (a JPEG is linked or copied byte for byte; another format is re-encoded at
  quality 95) and ``ImageSets/Main/<split>.txt``; a segmentation source (LabelMe) also writes
  ``SegmentationClass/<id>.png`` and ``ImageSets/Segmentation/<split>.txt``.
- COCO: ``<out>/<split>.json`` (``bbox [x, y, w, h]``, ``area = w * h``, category ids ``1..C``) and the
  images under ``<out>/images/``.
- YOLO: ``images/<split>/``, ``labels/<split>/<id>.txt`` (``cls cx cy w h``, as ultralytics'
  ``voc.yaml`` converter) and ``data.yaml`` (its ``names:`` and the splits written so far).

Shape shorthand: N = objects in an image.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
import yaml
from PIL import Image

__all__ = ["FORMATS", "write_voc", "write_coco", "write_yolo", "convert"]

FORMATS = ("voc", "coco", "yolo")


def _place(src: Path, dst: Path, jpeg: bool = False) -> None:
    """Hard-links (or copies) ``src`` to ``dst``; with ``jpeg``, a non-JPEG source is re-encoded."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    if jpeg and src.suffix.lower() not in (".jpg", ".jpeg"):
        with Image.open(src) as img:
            img.convert("RGB").save(dst, quality=95)
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.6g}"


def _voc_xml(image_id: str, size: tuple[int, int], boxes: np.ndarray, names: list[str], difficult: np.ndarray) -> str:
    h, w = size
    objects = "".join(
        f"  <object>\n    <name>{escape(n)}</name>\n    <pose>Unspecified</pose>\n    <truncated>0</truncated>\n"
        f"    <difficult>{int(d)}</difficult>\n    <bndbox>\n      <xmin>{_num(b[0] + 1)}</xmin>\n"
        f"      <ymin>{_num(b[1] + 1)}</ymin>\n      <xmax>{_num(b[2] + 1)}</xmax>\n"
        f"      <ymax>{_num(b[3] + 1)}</ymax>\n"
        f"    </bndbox>\n  </object>\n" for b, n, d in zip(boxes.astype(np.float64), names, difficult))
    return (f"<annotation>\n  <folder>VOC</folder>\n  <filename>{escape(image_id)}.jpg</filename>\n"
            f"  <size>\n    <width>{w}</width>\n    <height>{h}</height>\n    <depth>3</depth>\n  </size>\n"
            f"  <segmented>0</segmented>\n{objects}</annotation>\n")


def write_voc(dataset: Any, out: str | os.PathLike[str], split: str) -> Path:
    """Writes ``dataset`` as a VOC-layout folder ``out``; returns the split file written."""
    from visiontasks.data.palette import save_label_png

    out = Path(out)
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    seg = []
    for i, image_id in enumerate(dataset.ids):
        ann = dataset.get_annotation(i)
        _place(Path(dataset.image_path(i)), out / "JPEGImages" / f"{image_id}.jpg", jpeg=True)
        if "mask" in ann:
            save_label_png(out / "SegmentationClass" / f"{image_id}.png", ann["mask"].numpy().astype(np.uint8))
            seg.append(image_id)
            ann = _mask_boxes(dataset, i) if hasattr(dataset, "_data") else {"boxes": np.zeros((0, 4)), "labels": []}
        boxes = np.asarray(ann["boxes"], dtype=np.float64).reshape(-1, 4)
        names = [dataset.classes[int(k) - 1] for k in np.asarray(ann["labels"]).tolist()]
        difficult = np.asarray(ann.get("difficult", np.zeros(len(names), bool)), dtype=bool)
        xml = _voc_xml(image_id, tuple(dataset.expected_size(i)), boxes, names, difficult)
        (out / "Annotations" / f"{image_id}.xml").write_text(xml, encoding="utf-8")
    split_file = out / "ImageSets" / "Main" / f"{split}.txt"
    split_file.write_text("".join(f"{i}\n" for i in dataset.ids), encoding="utf-8")
    if seg:
        (out / "ImageSets" / "Segmentation").mkdir(parents=True, exist_ok=True)
        (out / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("".join(f"{i}\n" for i in seg), "utf-8")
    return split_file


def _mask_boxes(dataset: Any, i: int) -> dict[str, Any]:
    """The boxes of a LabelMe segmentation item (its shapes' boxes), for the VOC xml beside the mask."""
    from visiontasks.data.labelme import shapes_to_boxes

    boxes, labels = shapes_to_boxes(dataset._data[i], dataset.classes, dataset.jsons[i])
    return {"boxes": boxes, "labels": labels}


def write_coco(dataset: Any, out: str | os.PathLike[str], split: str) -> Path:
    """Writes ``dataset`` as ``out/<split>.json`` with its images in ``out/images/``; returns the json."""
    out = Path(out)
    images, annotations = [], []
    for i, image_id in enumerate(dataset.ids):
        src = Path(dataset.image_path(i))
        name = f"{image_id}{src.suffix.lower()}"
        _place(src, out / "images" / name)
        h, w = dataset.expected_size(i)
        images.append({"id": i + 1, "file_name": name, "height": int(h), "width": int(w)})
        ann = dataset.get_annotation(i)
        difficult = ann.get("difficult")
        for k, (box, label) in enumerate(zip(np.asarray(ann["boxes"], np.float64).reshape(-1, 4).tolist(),
                                             np.asarray(ann["labels"]).tolist())):
            bw, bh = box[2] - box[0], box[3] - box[1]
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": int(label),
                                "bbox": [box[0], box[1], bw, bh], "area": bw * bh,
                                "iscrowd": int(bool(difficult[k])) if difficult is not None else 0})
    categories = [{"id": k + 1, "name": n, "supercategory": "none"} for k, n in enumerate(dataset.classes)]
    path = out / f"{split}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}),
                    encoding="utf-8")
    return path


def write_yolo(dataset: Any, out: str | os.PathLike[str], split: str) -> Path:
    """Writes ``dataset`` as YOLO txt under ``out`` (``data.yaml`` updated); returns the yaml.

    ``cx = (x0 + x1) / 2 / W``, ``w = (x1 - x0) / W`` (ultralytics' voc.yaml ``convert_box`` on the
    0-based box), 6 decimals: the reader gives the boxes back within 1e-6 of the image size.
    """
    out = Path(out)
    labels = out / "labels" / split
    labels.mkdir(parents=True, exist_ok=True)
    for i, image_id in enumerate(dataset.ids):
        src = Path(dataset.image_path(i))
        _place(src, out / "images" / split / f"{image_id}{src.suffix.lower()}")
        h, w = dataset.expected_size(i)
        ann = dataset.get_annotation(i)
        rows = []
        for box, label in zip(np.asarray(ann["boxes"], np.float64).reshape(-1, 4), np.asarray(ann["labels"]).tolist()):
            cx, cy = (box[0] + box[2]) / 2 / w, (box[1] + box[3]) / 2 / h
            bw, bh = (box[2] - box[0]) / w, (box[3] - box[1]) / h
            rows.append(f"{int(label) - 1} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}\n")
        (labels / f"{image_id}.txt").write_text("".join(rows), encoding="utf-8")
    path = out / "data.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else {}
    data = {**(data or {}), "path": ".", split: f"images/{split}", "names": dict(enumerate(dataset.classes))}
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def convert(dataset: Any, fmt: str, out: str | os.PathLike[str], split: str) -> Path:
    """Writes ``dataset`` in format ``fmt`` (one of :data:`FORMATS`) under ``out``; returns the main file written."""
    writers = {"voc": write_voc, "coco": write_coco, "yolo": write_yolo}
    if fmt not in writers:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    return writers[fmt](dataset, out, split)
