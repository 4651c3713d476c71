"""Property-based tests of the YOLO txt label files and LabelMe json files a user gives (issue 26).

Entry points: :func:`visiontasks.data.yolo_txt.parse_label_file` (what ``YOLODetection`` reads for
each image) and :func:`visiontasks.data.labelme.read_labelme` followed by ``shapes_to_boxes`` /
``shapes_to_mask`` (what ``LabelMeDetection`` / ``LabelMeSegmentation`` do with each file).
Generated: label lines of 0-12 columns with odd numbers (``nan``, ``inf``, ``1e400``, ``-0``, ``2``,
``0x1``, ``1_0``), CR/CRLF/NBSP/form-feed separators, bytes that are not UTF-8; LabelMe documents
whose shapes, labels, points and shape types take odd values, and any JSON.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _fuzz import clean, fuzz, write
from hypothesis import strategies as st

from visiontasks.data.labelme import read_labelme, shapes_to_boxes, shapes_to_mask
from visiontasks.data.yolo_txt import parse_label_file
from visiontasks.errors import InputError

NUMS = ["0", "1", "2", "0.5", "0.25", "1.0", "-0", "-0.1", "1.5", "nan", "inf", "-inf", "1e400", "0x1", "1_0", "",
        "a", "1e-9", ".5", "0.", "3"]
SEPS = [" ", " ", "\t", "  ", "\u00a0", "\x0c"]
ENDS = ["\n", "\r\n", "\r", "\n\n", "\u2028"]


@st.composite
def label_text(draw) -> bytes:
    lines = []
    for _ in range(draw(st.integers(0, 5))):
        n = draw(st.sampled_from([5, 5, 5, 7, 9, 0, 1, 4, 6, 12]))
        cols = draw(st.lists(st.one_of(st.sampled_from(NUMS), st.floats().map(repr)), min_size=n, max_size=n))
        lines.append("".join(c + draw(st.sampled_from(SEPS)) for c in cols).rstrip(" ") + draw(st.sampled_from(ENDS)))
    data = "".join(lines).encode("utf-8")
    return data + draw(st.sampled_from([b"", b"", b"\xff\xfe", b"\x00"]))


ODD = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(), st.text(max_size=3),
                st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(), max_size=1))
coords = st.one_of(st.floats(-20, 60, allow_nan=False), st.integers(-5, 60), ODD)
points = st.one_of(st.lists(st.lists(coords, min_size=2, max_size=2), max_size=5),
                   st.lists(st.lists(coords, max_size=3), max_size=3), ODD)
shapes = st.one_of(st.fixed_dictionaries({"label": st.one_of(st.sampled_from(["cat", "dog", "bird"]), ODD),
                                          "points": points,
                                          "shape_type": st.one_of(st.sampled_from(["polygon", "rectangle", "circle",
                                                                                   "line", "point", "linestrip",
                                                                                   None, ""]), ODD)}), ODD)
json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=4)),
                           lambda kids: st.one_of(st.lists(kids, max_size=3),
                                                  st.dictionaries(st.text(max_size=6), kids, max_size=3)),
                           max_leaves=10)
labelme_docs = st.one_of(
    st.builds(lambda s, p, h, w: json.dumps({"shapes": s, "imagePath": p, "imageHeight": h, "imageWidth": w}),
              st.lists(shapes, max_size=4), st.one_of(st.just("a.jpg"), ODD), st.one_of(st.just(40), ODD),
              st.one_of(st.just(50), ODD)),
    json_values.map(json.dumps))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz_yolo_labelme")


def _check_yolo(folder: Path, data: bytes) -> None:
    path = write(folder, "a.txt", data)
    result, err = clean(lambda: parse_label_file(path, 3), path)
    if err is None:
        boxes, classes = result
        assert boxes.shape == (len(classes), 4) and np.isfinite(boxes).all()
        assert ((boxes >= 0) & (boxes <= 1)).all() and ((classes >= 0) & (classes < 3)).all()


def _check_labelme(folder: Path, text: str) -> None:
    path = write(folder, "a.json", text)

    def read():
        data = read_labelme(path)
        return shapes_to_boxes(data, ("cat", "dog"), path), shapes_to_mask(data, ("cat", "dog"), (40, 50), path)

    result, err = clean(read, path)
    if err is None:
        (boxes, labels), mask = result
        assert boxes.shape == (len(labels), 4) and np.isfinite(boxes).all() and set(labels.tolist()) <= {1, 2}
        assert mask.shape == (40, 50) and set(np.unique(mask).tolist()) <= {0, 1, 2}


test_yolo_label_files, test_yolo_label_files_long = fuzz(_check_yolo, data=label_text())
test_labelme_files, test_labelme_files_long = fuzz(_check_labelme, text=labelme_docs)


# ----------------------------------------------------------------------------- inputs hypothesis found, kept
@pytest.mark.parametrize("line", ["inf 0.5 0.5 0.1 0.1", "nan 0.5 0.5 0.1 0.1"])  # OverflowError / ValueError
def test_found_a_non_finite_class_index_is_one_error(folder, line):
    path = write(folder, "cls.txt", line + "\n")
    with pytest.raises(InputError, match=r"cls\.txt: line 1: class index (inf|nan) is not one of 0\.\.2"):
        parse_label_file(path, 3)


@pytest.mark.parametrize("doc, words", [
    ({"shapes": [{"label": "cat", "points": [[1, 2], [3, 4]], "shape_type": ["x"]}], "imagePath": "a.jpg"},
     "shape #0: shape_type must be a string, got ['x']"),  # was TypeError: unhashable type
    ({"shapes": [{"label": "cat", "points": [[1e300, 2], [3, 4], [1, 1]]}], "imagePath": "a.jpg"},
     "shape #0: label must be a string and points finite numbers"),  # was an inf box (float32 overflow)
    ({"shapes": [], "imagePath": 5}, "not a LabelMe file"),  # a number as the image's path
    (None, "nested too deeply"),  # 100,000 nested [ : was a RecursionError traceback
], ids=["shape-type-list", "float32-overflow", "image-path-number", "deep-json"])
def test_found_labelme_errors(folder, doc, words):
    path = write(folder, "lm.json", "[" * 100_000 if doc is None else json.dumps(doc))
    with pytest.raises(InputError, match=r"lm\.json") as info:
        read_labelme(path)
    assert words in str(info.value)


def test_sound_label_files_still_read(folder):
    boxes, classes = parse_label_file(write(folder, "ok.txt", "1 0.5 0.5 0.2 0.4\n2 0.1 0.1 0.3 0.1 0.3 0.3\n"), 3)
    np.testing.assert_allclose(boxes, [[0.5, 0.5, 0.2, 0.4], [0.2, 0.2, 0.2, 0.2]])
    assert classes.tolist() == [1, 2]
    data = read_labelme(write(folder, "ok.json", json.dumps(
        {"shapes": [{"label": "dog", "points": [[1, 2], [11, 22]], "shape_type": "rectangle"}], "imagePath": "a.jpg"})))
    boxes, labels = shapes_to_boxes(data, ("cat", "dog"), Path("ok.json"))
    assert boxes.tolist() == [[1, 2, 11, 22]] and labels.tolist() == [2]
