"""No silently wrong data: 16-bit PNGs, boxes outside the image, huge images, the up-front split check."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from _reliability import make_tiny_voc
from PIL import Image

from visiontasks.data import VOCDetection, read_image
from visiontasks.data.annotation import clip_boxes
from visiontasks.data.check import check_split
from visiontasks.data.coco import COCODetection
from visiontasks.errors import InputError

CLASSES = ("circle", "square", "triangle")


@pytest.fixture
def tiny(embedded_root, tmp_path):
    return make_tiny_voc(embedded_root, tmp_path / "voc")


def test_16_bit_greyscale_png_is_scaled_not_white(tmp_path):
    wide = np.array([[0, 257, 65535], [32896, 514, 1000]], dtype=np.uint16)  # 257 * k -> k
    Image.fromarray(wide).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    img = read_image(tmp_path / "g16.png")
    want = np.rint(wide / 257.0).astype(np.uint8)
    assert img.dtype == torch.uint8 and img.shape == (3, 2, 3)
    assert torch.equal(img[0], torch.from_numpy(want)) and torch.equal(img[0], img[2])


@pytest.mark.parametrize("mode, fill, want", [("RGBA", (10, 20, 30, 0), (10, 20, 30)), ("L", 77, (77, 77, 77)),
                                              ("P", 0, None), ("CMYK", (0, 0, 0, 0), (255, 255, 255))])
def test_other_modes_decode_to_rgb(tmp_path, mode, fill, want):
    path = tmp_path / ("x.png" if mode != "CMYK" else "x.jpg")
    Image.new(mode, (5, 4), fill).save(path)
    img = read_image(path)
    assert img.shape == (3, 4, 5) and img.dtype == torch.uint8
    if want is not None:
        assert tuple(img[:, 0, 0].tolist()) == pytest.approx(want, abs=2)


@pytest.mark.parametrize("make, words", [
    (lambda p: p.mkdir(), "is a folder"),
    (lambda p: p.write_bytes(b""), "cannot"),
    (lambda p: p.write_bytes(b"\xff\xd8\xff\xe0garbage"), "cannot"),
    (lambda p: p.write_text("<html>not an image</html>"), "cannot"),
])
def test_unreadable_images_name_the_file(tmp_path, make, words):
    path = tmp_path / "bad name é.jpg"
    make(path)
    with pytest.raises(InputError, match=words) as info:
        read_image(path)
    assert info.value.path == str(path)


def test_decompression_bomb_is_refused_with_one_line(tmp_path, monkeypatch):
    Image.new("L", (100, 100)).save(tmp_path / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 10,000 px > 2 x limit: PIL refuses
    with pytest.raises(InputError, match="too large") as info:
        read_image(tmp_path / "huge.png")
    assert "huge.png" in str(info.value) and "\n" not in str(info.value)


def test_clip_boxes_hand_computed():
    boxes = np.array([[-3, 2, 10, 8], [5, 5, 12, 30], [1, 1, 2, 2]], dtype=np.float32)
    voc, changed = clip_boxes(boxes, (20, 11), "a.xml")  # H 20, W 11: x in [0, 10], y in [0, 19]
    np.testing.assert_array_equal(voc, [[0, 2, 10, 8], [5, 5, 10, 19], [1, 1, 2, 2]])
    assert changed == 2
    coco, changed = clip_boxes(boxes, (20, 11), "a.json", inclusive=False)  # x in [0, 11], y in [0, 20]
    np.testing.assert_array_equal(coco, [[0, 2, 10, 8], [5, 5, 11, 20], [1, 1, 2, 2]])
    with pytest.raises(InputError, match="object #0 .* outside its 11x20 image"):
        clip_boxes(np.array([[12, 0, 15, 5]], dtype=np.float32), (20, 11), "a.xml")


def _set_first_box(xml_path, xmin, xmax):
    import re

    text = re.sub(r"<xmin>[^<]*</xmin>", f"<xmin>{xmin}</xmin>", xml_path.read_text(), count=1)
    xml_path.write_text(re.sub(r"<xmax>[^<]*</xmax>", f"<xmax>{xmax}</xmax>", text, count=1))


def test_boxes_past_the_image_are_clipped_for_training_and_evaluation(tiny, capsys):
    _set_first_box(tiny / "Annotations" / "000000.xml", -20, 500)  # the image is 160 px wide
    capsys.readouterr()
    ds = VOCDetection(tiny, "trainval", classes=CLASSES)
    assert "1 ground-truth box(es) extend past their image" in capsys.readouterr().err
    box = ds.get_annotation(0)["boxes"][0]  # what the evaluators read
    assert box[0] == 0 and box[2] == 159
    _, target = ds[0]  # what training reads
    assert target["boxes"][0, 0] == 0 and target["boxes"][0, 2] == 159


def test_coco_boxes_are_clipped(tmp_path, capsys):
    import json

    Image.new("RGB", (10, 8)).save(tmp_path / "a.jpg")
    gt = {"images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 8}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [-2, 1, 20, 3], "iscrowd": 0,
                           "area": 60}], "categories": [{"id": 3, "name": "cat"}]}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    ds = COCODetection(tmp_path, tmp_path / "gt.json")
    assert ds.get_annotation(0)["boxes"].tolist() == [[0.0, 1.0, 10.0, 4.0]]
    assert "clipped" in capsys.readouterr().err


def test_check_split_finds_a_bad_test_image_before_training(tiny):
    ds = VOCDetection(tiny, "test", classes=CLASSES)
    assert check_split(ds, "test") == 2
    Image.new("RGB", (20, 30)).save(ds.image_path(1), format="JPEG")  # another size than the XML says
    with pytest.raises(InputError, match="000301.jpg: image is \\(30, 20\\)"):
        check_split(ds, "test")
    ds.image_path(1).write_bytes(b"truncated")
    with pytest.raises(InputError, match="000301.jpg: cannot read image header"):
        check_split(ds, "test")


def test_empty_split_names_its_file(tiny):
    (tiny / "ImageSets" / "Main" / "test.txt").write_text("\n\r\n")
    ds = VOCDetection(tiny, "test", classes=CLASSES)
    with pytest.raises(InputError, match="test.txt: split 'test' has no images"):
        check_split(ds, "test")


def test_crlf_split_file_reads_the_same_ids(tiny):
    path = tiny / "ImageSets" / "Main" / "trainval.txt"
    ids = VOCDetection(tiny, "trainval", classes=CLASSES).ids
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    assert VOCDetection(tiny, "trainval", classes=CLASSES).ids == ids
