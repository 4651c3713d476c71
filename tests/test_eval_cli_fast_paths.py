"""The fast paths of `eval.py det` on results files: no torch import, the batch annotation parser and
the vectorised comp4 parser equal to the exact ones, and an annotation cache that is never stale."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from test_eval_cli_options import GT10, REPO, write_dets, write_voc
from visiontasks.errors import InputError
from visiontasks.evaluation.voc.annotations import parse_annotation
from visiontasks.evaluation.voc.cache import cache_path, read_annotations
from visiontasks.evaluation.voc.results import _parse_fast, _parse_file, _KnownIds, read_voc_results
from visiontasks.evaluation.voc.xml_batch import parse_plain_files


def test_det_on_results_files_imports_no_torch(tmp_path):
    root = write_voc(tmp_path / "voc", {"a": [("cat", GT10, 0)], "b": [("cat", GT10, 1)]})
    write_dets(tmp_path / "dets", "cat", [("a", 0.9, GT10)])
    code = ("import runpy, sys\n"
            "sys.path.insert(0, 'tools')\n"
            f"sys.argv = ['tools/eval.py', 'det', '--root', {str(root)!r}, '--detections', {str(tmp_path / 'dets')!r}, "
            f"'--classes', 'cat', '--cache-dir', {str(tmp_path / 'cache')!r}]\n"
            "try:\n    runpy.run_path('tools/eval.py', run_name='__main__')\n"
            "except SystemExit as e:\n    assert e.code == 0, e.code\n"
            "print('LOADED', sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', "
            "'matplotlib', 'pycocotools')))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "LOADED []" in done.stdout, done.stdout
    assert "100.00" in done.stdout


VOC2012_STYLE = b"""<?xml version="1.0" encoding="utf-8"?>
<annotation>
  <filename>x.jpg</filename>
  <size><width>500</width><height>375</height><depth>3</depth></size>
  <owner><name>someone</name></owner>
  <object>
    <name>person</name><pose>Left</pose><truncated>1</truncated><occluded>0</occluded>
    <bndbox><xmin>10.5</xmin><ymin>20</ymin><xmax>30</xmax><ymax>40</ymax></bndbox>
    <difficult>1</difficult>
    <part><name>head</name><bndbox><xmin>11</xmin><ymin>21</ymin><xmax>15</xmax><ymax>25</ymax></bndbox></part>
    <actions><jumping>0</jumping></actions>
  </object>
  <object>
    <name> dog </name>
    <bndbox>
      <xmin>1</xmin><ymin>1</ymin><xmax>1</xmax><ymax>1</ymax>
    </bndbox>
  </object>
</annotation>
"""


@pytest.mark.parametrize("data, plain", [
    (VOC2012_STYLE, True),
    (b"<annotation><filename>e.jpg</filename></annotation>", True),
    (b"<annotation><object><name>a</name><difficult> </difficult><bndbox><xmin>1</xmin><ymin>2</ymin>"
     b"<xmax>3</xmax><ymax>4</ymax></bndbox></object></annotation>", True),
    (VOC2012_STYLE.replace(b"<object>", b"<object id='3'>", 1), False),       # attributes
    (VOC2012_STYLE.replace(b"<pose>", b"<!-- c --><pose>"), False),           # a comment
    (VOC2012_STYLE.replace(b"<difficult>1", b"<difficult>2"), False),         # int("2") -> True, tree parser's call
    (VOC2012_STYLE.replace(b"<name>person</name>", b"<name>a</name><name>b</name>"), False),
    (VOC2012_STYLE.replace(b"person", b"caf\xc3\xa9"), True),                 # UTF-8 name
    (VOC2012_STYLE.replace(b"encoding=\"utf-8\"", b"encoding=\"latin-1\""), False),
    (VOC2012_STYLE.replace(b"<width>500</width>", b"<width>500.0</width>"), True),
    (VOC2012_STYLE.replace(b"<width>500</width>", b"<width>500</width><width>2</width>"), False),
])
def test_batch_parser_equals_tree_parser(data, plain):
    other = b"<annotation><object><name>z</name><bndbox><xmin>5</xmin><ymin>6</ymin><xmax>7</xmax><ymax>8</ymax>" \
            b"</bndbox></object></annotation>"
    got = parse_plain_files([other, data, other])
    assert (got[1] is not None) == plain
    for rec, raw in zip(got, [other, data, other]):
        if rec is not None:
            ref = parse_annotation("x.xml", raw)
            assert rec.names == ref.names
            assert np.array_equal(rec.boxes, ref.boxes) and rec.boxes.dtype == ref.boxes.dtype
            assert np.array_equal(rec.difficult, ref.difficult) and rec.size == ref.size
    assert got[0] is not None and got[2] is not None  # a neighbour never spoils the others


@pytest.mark.parametrize("bad", [
    b"<annotation><object><name>a</name>",                                           # truncated
    b"<annotation><object></object><object></annotation>",                         # unbalanced
    b"<annotation><object><name>a</name><bndbox><xmin>x</xmin><ymin>1</ymin><xmax>2</xmax><ymax>3</ymax></bndbox>"
    b"</object></annotation>",                                                      # not a number
    b"<annotation><object><name>a</name><bndbox><xmin>9</xmin><ymin>1</ymin><xmax>2</xmax><ymax>3</ymax></bndbox>"
    b"</object></annotation>",                                                      # inverted
    b"<annotation></annotation><annotation></annotation>",                         # two roots
])
def test_batch_parser_leaves_bad_files_to_the_tree_parser(bad):
    assert parse_plain_files([bad])[0] is None
    with pytest.raises(InputError):
        parse_annotation("x.xml", bad)


def _old(path: Path, when: float) -> None:
    os.utime(path, (when, when))


def test_annotation_cache_is_used_and_invalidated(tmp_path):
    root = write_voc(tmp_path / "voc", {"a": [("cat", GT10, 0)], "b": [("dog", (2, 2, 8, 9), 1)]})
    folder, cache = root / "Annotations", tmp_path / "cache"
    hour_ago = time.time() - 3600
    for p in folder.iterdir():
        _old(p, hour_ago)
    first = read_annotations(folder, ["a.xml", "b.xml"], cache)
    assert cache_path(cache, folder).is_file() and [r.names for r in first] == [["cat"], ["dog"]]
    # the cache is read: a change that keeps size and mtime (restored on purpose) is not seen
    a = folder / "a.xml"
    a.write_text(a.read_text().replace("cat", "cow"))
    _old(a, hour_ago)
    assert read_annotations(folder, ["a.xml"], cache)[0].names == ["cat"]
    # any real change moves the mtime (or the size): the entry is not used
    _old(a, hour_ago + 1)
    assert read_annotations(folder, ["a.xml"], cache)[0].names == ["cow"]
    a.write_text(a.read_text().replace("cow", "yak"))  # written now: a fresh mtime, and too recent to cache
    assert read_annotations(folder, ["a.xml", "b.xml"], cache)[0].names == ["yak"]
    b = folder / "b.xml"
    b.write_text(b.read_text().replace("<xmax>8</xmax>", "<xmax>80</xmax>"))  # size changes
    _old(b, hour_ago)
    assert read_annotations(folder, ["b.xml"], cache)[0].boxes.tolist() == [[1.0, 1.0, 79.0, 8.0]]


def test_annotation_cache_file_is_plain_arrays_and_corruption_is_ignored(tmp_path):
    root = write_voc(tmp_path / "voc", {"a": [("cat", GT10, 0)]})
    folder, cache = root / "Annotations", tmp_path / "cache"
    _old(folder / "a.xml", time.time() - 3600)
    read_annotations(folder, ["a.xml"], cache)
    with np.load(cache_path(cache, folder), allow_pickle=False) as z:  # loads without pickle
        assert z["names"].tolist() == ["cat"]
    cache_path(cache, folder).write_bytes(b"PK\x03\x04 not a zip")
    assert read_annotations(folder, ["a.xml"], cache)[0].names == ["cat"]


def test_fresh_files_are_not_cached(tmp_path):
    root = write_voc(tmp_path / "voc", {"a": [("cat", GT10, 0)]})
    read_annotations(root / "Annotations", ["a.xml"], tmp_path / "cache")
    assert not cache_path(tmp_path / "cache", root / "Annotations").exists()


def test_vectorised_results_parser_equals_the_line_parser(tmp_path):
    rng = np.random.default_rng(0)
    ids = [f"{i:06d}" for i in range(50)] + ["2008_000123", "x"]
    known = _KnownIds(ids)
    lines = []
    for k in range(400):
        nums = [f"{v:.{rng.integers(0, 9)}f}" for v in rng.uniform(-5, 900, 5)]
        if k % 7 == 0:
            nums[1] = f"{rng.uniform(0, 500):.17g}"
        sep = ["  ", "\t", " "][k % 3]
        lines.append(sep.join([ids[rng.integers(len(ids))], *nums]) + ("\r\n" if k % 5 == 0 else "\n"))
        if k % 50 == 0:
            lines.append("\n   \n")
    data = "".join(lines).encode()
    path = tmp_path / "comp4_det_test_cat.txt"
    path.write_bytes(data)
    image, values = _parse_fast(data, known)
    rows: list = []
    _parse_file(path, 1, known, "test", rows)
    ref = np.array(rows)
    assert np.array_equal(image, ref[:, 0].astype(np.int64)) and np.array_equal(values, ref[:, 2:])
    for odd in (b"000001 0.5 1 2 3 4 5\n", b"000001 nan 1 2 3 4\n", b"000001 0x1 1 2 3 4\n", b"zzz 0.5 1 2 3 4\n",
                "000001 0.5 1 2 3 4\u00a0\n".encode()):
        assert _parse_fast(data + odd, known) is None  # the exact parser decides (and names the line)


def test_results_errors_name_file_and_line_as_before(tmp_path):
    path = write_dets(tmp_path, "cat", [("a", 0.5, GT10), ("a", 0.4, GT10)])
    for bad, needle in (("a 0.3 1 2 3\n", "line 3: expected"), ("a 0.3 1 2 3 inf\n", "line 3: non-finite"),
                        ("b 0.3 1 2 3 4\n", "line 3: image id 'b'")):
        path.write_text("a 0.5 1 1 10 10\na 0.4 1 1 10 10\n" + bad)
        with pytest.raises(InputError, match=needle) as err:
            read_voc_results(tmp_path, "test", ["cat"], ["a"])
        assert err.value.path == str(path)


def test_ground_truth_clipped_as_the_dataset_clips_it(tmp_path, capsys):
    from visiontasks.data import VOCDetection
    from visiontasks.evaluation.voc.ground_truth import load_detection_ground_truth

    root = write_voc(tmp_path / "voc", {"a": [("cat", (90, 95, 130, 100), 0), ("cat", GT10, 0)],
                                        "b": [("dog", (0, -3, 20, 20), 0)], "c": [("dog", GT10, 0)]})
    (root / "JPEGImages").mkdir()
    for i in "abc":
        (root / "JPEGImages" / f"{i}.jpg").write_bytes(b"")  # the dataset only checks that they exist
    ours = load_detection_ground_truth(root, "test", ["cat", "dog"])
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "2 ground-truth box(es)" in err and "a.xml" in err
    dataset = VOCDetection(root, "test", classes=["cat", "dog"])
    for k in range(3):
        assert np.array_equal(ours.boxes[k], dataset.get_annotation(k)["boxes"].numpy().astype(np.float64))
    assert ours.boxes[0].tolist()[0] == [89.0, 94.0, 99.0, 99.0]
    xml = root / "Annotations" / "c.xml"
    xml.write_text(xml.read_text().replace("<xmin>1</xmin>", "<xmin>150</xmin>").replace("<xmax>10</xmax>",
                                                                                          "<xmax>160</xmax>"))
    with pytest.raises(InputError, match="lies outside its 100x100 image") as exc:
        load_detection_ground_truth(root, "test", ["cat", "dog"])
    assert exc.value.path == str(xml)
