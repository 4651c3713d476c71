"""VOC-layout datasets: the real coco128-voc photos, the embedded set, and every kind of bad input."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visiontasks.data import (
    EMBEDDED_CLASSES, VOC_CLASSES, VOCDetection, VOCSegmentation, parse_voc_xml, save_label_png,
)
from visiontasks.errors import InputError

GOOD_OBJECT = ("<object><name>{name}</name><difficult>{diff}</difficult><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
               "<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>")


def _xml(objects: str, w: int = 32, h: int = 24) -> str:
    return f"<annotation><size><width>{w}</width><height>{h}</height><depth>3</depth></size>{objects}</annotation>"


def make_voc(root: Path, annotations: dict[str, str], size: tuple[int, int] = (24, 32), masks: bool = False) -> Path:
    """A tiny VOC folder: one grey JPEG per id, the given XML texts, split 'trainval' (and 'train')."""
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main", "ImageSets/Segmentation", "SegmentationClass"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for image_id, text in annotations.items():
        Image.new("RGB", size[::-1], (90, 120, 150)).save(root / "JPEGImages" / f"{image_id}.jpg")
        (root / "Annotations" / f"{image_id}.xml").write_text(text)
        if masks:
            m = np.zeros(size, np.uint8)
            m[2:6, 3:9] = 7
            m[0, 0] = 255
            save_label_png(root / "SegmentationClass" / f"{image_id}.png", m)
    ids = "".join(f"{i}\n" for i in annotations)
    (root / "ImageSets/Main/trainval.txt").write_text(ids)
    (root / "ImageSets/Segmentation/train.txt").write_text(ids)
    return root


def test_parse_subtracts_one_and_reads_difficult(tmp_path):
    objs = GOOD_OBJECT.format(name="dog", diff=0, x0=1, y0=2, x1=10, y1=20) + \
        GOOD_OBJECT.format(name="cat", diff=1, x0=5, y0=6, x1=7, y1=8)
    root = make_voc(tmp_path, {"a": _xml(objs)})
    ds = VOCDetection(root, "trainval")
    t = ds.get_annotation(0)
    assert t["boxes"].dtype == torch.float32 and t["labels"].dtype == torch.int64
    assert t["boxes"].tolist() == [[0, 1, 9, 19], [4, 5, 6, 7]]
    assert t["labels"].tolist() == [VOC_CLASSES.index("dog") + 1, VOC_CLASSES.index("cat") + 1]
    assert t["difficult"].tolist() == [False, True]
    assert t["image_id"] == "a" and t["orig_size"].tolist() == [24, 32]
    image, target = ds[0]
    assert image.shape == (3, 24, 32) and image.dtype == torch.float32
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert torch.equal(target["boxes"], t["boxes"])


def test_image_without_objects_is_a_valid_sample(tmp_path):
    ds = VOCDetection(make_voc(tmp_path, {"e": _xml("")}), "trainval")
    _, t = ds[0]
    assert t["boxes"].shape == (0, 4) and t["labels"].shape == (0,) and t["difficult"].shape == (0,)


def test_missing_difficult_defaults_to_zero(tmp_path):
    obj = "<object><name>dog</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>4</xmax><ymax>4</ymax></bndbox></object>"
    ds = VOCDetection(make_voc(tmp_path, {"a": _xml(obj)}), "trainval")
    assert ds.get_annotation(0)["difficult"].tolist() == [False]


BAD_XML = {
    "hostile": ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
                "<annotation><folder>&lol2;</folder></annotation>", "hostile"),
    "malformed": ("<annotation><object><name>dog</name></annotation>", "malformed"),
    "no_name": (_xml("<object><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>3</xmax><ymax>3</ymax></bndbox></object>"), "<name>"),
    "no_bndbox": (_xml("<object><name>dog</name></object>"), "<bndbox>"),
    "no_xmax": (_xml("<object><name>dog</name><bndbox><xmin>1</xmin><ymin>1</ymin><ymax>3</ymax></bndbox></object>"), "<xmax>"),
    "non_numeric": (_xml(GOOD_OBJECT.format(name="dog", diff=0, x0="one", y0=1, x1=3, y1=3)), "not a number"),
    "inverted": (_xml(GOOD_OBJECT.format(name="dog", diff=0, x0=9, y0=1, x1=3, y1=3)), "inverted"),
    "unknown_class": (_xml(GOOD_OBJECT.format(name="unicorn", diff=0, x0=1, y0=1, x1=3, y1=3)), "unicorn"),
    "wrong_root": ("<notvoc/>", "<annotation>"),
}


@pytest.mark.parametrize("case", sorted(BAD_XML))
def test_bad_annotation_is_an_input_error_naming_the_file(tmp_path, case):
    text, needle = BAD_XML[case]
    root = make_voc(tmp_path, {"ok": _xml(""), "bad": text})
    with pytest.raises(InputError) as err:
        VOCDetection(root, "trainval")
    assert err.value.path == str(root / "Annotations" / "bad.xml")
    assert needle in str(err.value)


def test_subset_of_classes_rejects_other_objects(tmp_path):
    root = make_voc(tmp_path, {"a": _xml(GOOD_OBJECT.format(name="dog", diff=0, x0=1, y0=1, x1=3, y1=3))})
    assert VOCDetection(root, "trainval", classes=("cat", "dog")).get_annotation(0)["labels"].tolist() == [2]
    with pytest.raises(InputError, match="'dog'"):
        VOCDetection(root, "trainval", classes=("cat",))


def test_missing_split_image_and_annotation(tmp_path):
    root = make_voc(tmp_path, {"a": _xml(""), "b": _xml("")})
    with pytest.raises(InputError) as err:
        VOCDetection(root, "val")
    assert err.value.path.endswith(str(Path("ImageSets", "Main", "val.txt")))
    (root / "Annotations" / "b.xml").unlink()
    with pytest.raises(InputError, match="listed in") as err:
        VOCDetection(root, "trainval")
    assert err.value.path == str(root / "Annotations" / "b.xml")
    (root / "JPEGImages" / "a.jpg").unlink()
    with pytest.raises(InputError) as err:
        VOCDetection(root, "trainval")
    assert err.value.path == str(root / "JPEGImages" / "a.jpg")
    with pytest.raises(InputError, match="not found"):
        VOCDetection(tmp_path / "nowhere", "trainval")


def test_segmentation_reads_palette_indices(tmp_path):
    root = make_voc(tmp_path, {"a": _xml("")}, masks=True)
    ds = VOCSegmentation(root, "train")
    image, t = ds[0]
    assert image.shape == (3, 24, 32) and t["mask"].shape == (24, 32) and t["mask"].dtype == torch.int64
    assert int(t["mask"][3, 4]) == 7 and int(t["mask"][0, 0]) == 255 and int(t["mask"][10, 20]) == 0
    with pytest.raises(InputError, match="beyond"):
        VOCSegmentation(root, "train", classes=("x", "y")).get_annotation(0)


def test_segmentation_mask_size_mismatch_and_missing_mask(tmp_path):
    root = make_voc(tmp_path, {"a": _xml("")}, masks=True)
    save_label_png(root / "SegmentationClass" / "a.png", np.zeros((10, 10), np.uint8))
    with pytest.raises(InputError, match="mask is") as err:
        VOCSegmentation(root, "train")
    assert err.value.path == str(root / "SegmentationClass" / "a.png")
    (root / "SegmentationClass" / "a.png").unlink()
    with pytest.raises(InputError) as err:
        VOCSegmentation(root, "train")
    assert err.value.path == str(root / "SegmentationClass" / "a.png")


def test_embedded_through_voc_reader(embedded_root):
    ds = VOCDetection(embedded_root, "test", classes=EMBEDDED_CLASSES)
    assert len(ds) == 100 and ds.classes == EMBEDDED_CLASSES and ds.root == embedded_root
    image, t = ds[3]
    assert image.shape[0] == 3 and tuple(image.shape[1:]) == tuple(t["orig_size"].tolist())


# ---- real photos ------------------------------------------------------------------------------

def _naive_objects(xml_path: Path) -> list[tuple[str, list[float]]]:
    root = ET.parse(xml_path).getroot()
    return [(o.findtext("name"), [float(o.find("bndbox").findtext(k)) - 1 for k in ("xmin", "ymin", "xmax", "ymax")])
            for o in root.iter("object")]


def test_coco128_detection_counts_and_boxes(coco128_root):
    datasets = [VOCDetection(coco128_root, s) for s in ("trainval", "test")]
    assert sum(len(d) for d in datasets) == 256
    counts = [len(d.get_annotation(i)["boxes"]) for d in datasets for i in range(len(d))]
    assert sum(counts) == 967 and counts.count(0) == 59
    for d in datasets:
        for i in range(0, len(d), 7):
            naive = _naive_objects(coco128_root / "Annotations" / f"{d.ids[i]}.xml")
            t = d.get_annotation(i)
            assert t["boxes"].tolist() == [b for _, b in naive]
            assert [VOC_CLASSES[k - 1] for k in t["labels"].tolist()] == [n for n, _ in naive]


def test_coco128_items_decode(coco128_root):
    ds = VOCDetection(coco128_root, "test")
    for i in (0, 1, 50):
        image, t = ds[i]
        assert image.dtype == torch.float32 and image.shape[0] == 3
        assert list(image.shape[1:]) == t["orig_size"].tolist()
        assert 0 <= image.min() and image.max() <= 1


def test_coco128_segmentation_masks(coco128_root):
    allowed = set(range(21)) | {255}
    for split in ("train", "val"):
        ds = VOCSegmentation(coco128_root, split)
        assert len(ds) == 100
        for i in range(0, len(ds), 9):
            t = ds.get_annotation(i)
            assert set(t["mask"].unique().tolist()) <= allowed
            assert Image.open(ds.image_path(i)).size[::-1] == tuple(t["mask"].shape)
    image, t = ds[0]
    assert image.shape[1:] == t["mask"].shape


def test_corrupt_image_and_size_disagreeing_with_xml(tmp_path):
    root = make_voc(tmp_path, {"a": _xml(""), "b": _xml("", w=50, h=40)})
    ds = VOCDetection(root, "trainval")
    with pytest.raises(InputError, match="annotation says") as err:
        ds[1]
    assert err.value.path == str(root / "JPEGImages" / "b.jpg")
    (root / "JPEGImages" / "a.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(InputError, match="cannot decode") as err:
        ds[0]
    assert err.value.path == str(root / "JPEGImages" / "a.jpg")


def test_parse_voc_xml_directly(tmp_path):
    path = tmp_path / "x.xml"
    path.write_text(_xml(GOOD_OBJECT.format(name="b", diff=1, x0=2.5, y0=3, x1=4, y1=5)))
    ann = parse_voc_xml(path, ("a", "b"))
    assert ann.boxes.tolist() == [[1.5, 2.0, 3.0, 4.0]] and ann.labels.tolist() == [2] and ann.size == (24, 32)
    with pytest.raises(InputError, match="not found"):
        parse_voc_xml(tmp_path / "none.xml", ("a",))
