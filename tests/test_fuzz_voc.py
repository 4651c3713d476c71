"""Property-based tests of the VOC files a user gives: annotation XML and comp4 results files (issue 26).

Entry points: :func:`visiontasks.data.parse_voc_xml` (the datasets), the evaluators' batch parser
:func:`~visiontasks.evaluation.voc.annotations.parse_annotations` whose fast path
(:func:`~visiontasks.evaluation.voc.xml_batch.parse_plain_files`) must equal the tree parser wherever
it answers, and :func:`~visiontasks.evaluation.voc.results.read_voc_results` (``tools/eval.py det``),
whose vectorised reader must equal its line-by-line one. Generated: VOC-like element trees over the
tags the parsers look at (random nesting, attributes, texts such as ``nan``, ``1e400``, `` 12 ``,
``1_0``), byte mutations of a valid file, and results lines with odd numbers, ids and separators.
"""
from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import pytest
from _fuzz import clean, fuzz, write
from hypothesis import strategies as st

from visiontasks.data import parse_voc_xml
from visiontasks.errors import InputError
from visiontasks.evaluation.voc.annotations import parse_annotation, parse_annotations
from visiontasks.evaluation.voc.results import read_voc_results
from visiontasks.evaluation.voc.xml_batch import parse_plain_files

CLASSES = ("cat", "dog")
VALID = (b'<?xml version="1.0" encoding="utf-8"?>\n<annotation><folder>VOC</folder><filename>a.jpg</filename>'
         b"<size><width>50</width><height>40</height><depth>3</depth></size>"
         b"<object><name>cat</name><difficult>0</difficult><bndbox><xmin>1</xmin><ymin>2</ymin>"
         b"<xmax>30</xmax><ymax>20</ymax></bndbox></object>"
         b"<object><name>dog</name><pose>Left</pose><bndbox><xmin>5</xmin><ymin>6</ymin><xmax>50</xmax>"
         b"<ymax>40</ymax></bndbox><part><name>head</name><bndbox><xmin>5</xmin><ymin>6</ymin><xmax>9</xmax>"
         b"<ymax>9</ymax></bndbox></part></object></annotation>\n")

NUMBERS = ["1", "12", " 12 ", "\n3\n", "0", "-1", "1.5", "1e3", "1e400", "-1e400", "nan", "inf", "1_0", "0x10",
           "", " ", "abc", "٣", "1,5", "+7", "1e-400", "3.4e39", "99999999999999999999"]
TAGS = ["annotation", "object", "name", "bndbox", "xmin", "ymin", "xmax", "ymax", "difficult", "size", "width",
        "height", "part", "source", "pose", "truncated"]
texts = st.one_of(st.sampled_from(NUMBERS + ["cat", "dog", "bird", "0", "1", "2"]), st.text(max_size=6))
attributes = st.one_of(st.just(""), st.sampled_from([' a="1"', " x='y'", ' name="cat"']))


def _render(node) -> str:
    tag, attr, text, children, tail = node
    return f"<{tag}{attr}>{escape(text)}{''.join(_render(c) for c in children)}</{tag}>{escape(tail)}"


elements = st.recursive(
    st.tuples(st.sampled_from(TAGS), attributes, texts, st.just([]), st.sampled_from(["", "", " ", "x"])),
    lambda kids: st.tuples(st.sampled_from(TAGS), attributes, texts, st.lists(kids, max_size=5),
                           st.sampled_from(["", "", "\n"])),
    max_leaves=30)


def _object(name: str, corners: list[str], difficult: str | None, extra: list) -> tuple:
    box = ("bndbox", "", "", [(t, "", v, [], "") for t, v in zip(("xmin", "ymin", "xmax", "ymax"), corners)], "")
    kids = [("name", "", name, [], ""), box, *extra]
    if difficult is not None:
        kids.insert(1, ("difficult", "", difficult, [], ""))
    return ("object", "", "", kids, "")


voc_objects = st.builds(_object, st.sampled_from(["cat", "dog", " cat ", "bird", ""]),
                        st.lists(st.sampled_from(NUMBERS[:12]), min_size=4, max_size=4),
                        st.one_of(st.none(), st.sampled_from(["0", "1", "", " 1 ", "2", "x"])),
                        st.lists(elements, max_size=2))


@st.composite
def xml_documents(draw) -> bytes:
    """A VOC-shaped document (objects with boxes, a size, stray elements) or any tag soup."""
    if draw(st.booleans()):
        size = [("size", "", "", [("width", "", draw(st.sampled_from(NUMBERS)), [], ""),
                                  ("height", "", draw(st.sampled_from(NUMBERS)), [], "")], "")]
        kids = draw(st.lists(st.one_of(voc_objects, elements), max_size=5)) + (size if draw(st.booleans()) else [])
        kids = draw(st.permutations(kids))
        root = ("annotation", draw(attributes), "", kids, "")
    else:
        root = draw(elements)
    decl = draw(st.sampled_from(["", '<?xml version="1.0"?>', '<?xml version="1.0" encoding="utf-8"?>\n',
                                 "<?xml version='1.1' encoding='US-ASCII' standalone='yes'?>",
                                 '<?xml version="1.0" encoding="latin-1"?>']))
    return (decl + _render(root)).encode("utf-8")


@st.composite
def mutated(draw, valid: bytes = VALID) -> bytes:
    """``valid`` with a few bytes inserted, deleted or replaced."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        what = draw(st.sampled_from(["insert", "delete", "replace"]))
        chunk = draw(st.one_of(st.binary(min_size=1, max_size=4),
                               st.sampled_from([b"<", b">", b"&", b"&amp;", b"<!DOCTYPE a>", b"<!--x-->",
                                                b"<![CDATA[1]]>", b"<?pi x?>", b"\xff", b"\x00", b"</object>",
                                                b"<object>", b"nan", b"1e999", b"-"])))
        if what == "insert":
            data[at:at] = chunk
        elif what == "delete":
            del data[at:at + len(chunk)]
        else:
            data[at:at + len(chunk)] = chunk
    return bytes(data)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz_voc")


def _check_dataset_parse(folder: Path, data: bytes) -> None:
    path = write(folder, "000001.xml", data)
    ann, err = clean(lambda: parse_voc_xml(path, CLASSES), path)
    if err is None:
        n = len(ann.boxes)
        assert ann.boxes.shape == (n, 4) and ann.boxes.dtype == np.float32
        assert np.isfinite(ann.boxes).all(), ann.boxes
        assert (ann.boxes[:, 2] >= ann.boxes[:, 0]).all() and (ann.boxes[:, 3] >= ann.boxes[:, 1]).all()
        assert ann.labels.shape == (n,) and set(ann.labels.tolist()) <= {1, 2}
        assert ann.difficult.shape == (n,) and ann.difficult.dtype == bool
        assert ann.size is None or (min(ann.size) >= 1 and all(isinstance(v, int) for v in ann.size))


def _check_fast_path_equals_tree(folder: Path, datas: list[bytes]) -> None:
    fast = parse_plain_files(datas)
    for k, (data, got) in enumerate(zip(datas, fast)):
        path = f"{k}.xml"
        want, err = clean(lambda: parse_annotation(path, data), path)
        if got is None:
            continue
        assert err is None, f"fast path accepted what the tree parser refuses ({err}): {data!r}"
        assert got.names == want.names and got.size == want.size, (got, want, data)
        np.testing.assert_array_equal(got.boxes, want.boxes)
        np.testing.assert_array_equal(got.difficult, want.difficult)
    # the public batch entry point: the tree parser's answer for every file, or its first error
    _, err = clean(lambda: parse_annotations([f"{k}.xml" for k in range(len(datas))], datas), None)
    assert err is None or any(f"{k}.xml" in str(err) for k in range(len(datas)))


test_voc_xml_documents, test_voc_xml_documents_long = fuzz(_check_dataset_parse, data=xml_documents())
test_voc_xml_mutations, test_voc_xml_mutations_long = fuzz(_check_dataset_parse, data=mutated())
test_voc_xml_fast_path, test_voc_xml_fast_path_long = fuzz(
    _check_fast_path_equals_tree, datas=st.lists(st.one_of(xml_documents(), mutated(), st.just(VALID)),
                                                 min_size=1, max_size=3))


# ----------------------------------------------------------------------------- comp4 results files
IDS = ("000001", "000002", "2008_000003", "a b")  # "a b" can never be named by a line (split on blanks)
FIELDS = ["000001", "000002", "2008_000003", "000009", "0.9", "1", "0", "-3", "1e3", "1E-2", "1e400", "nan", "inf",
          "-inf", "1_0", "0x1f", ".5", "5.", "+.5e+1", "1-2", "1e5e3", "--1", ".", "e", "1.2.3", "٣", "½", "1,5"]
SEPARATORS = [" ", " ", " ", "\t", "  ", " \u00a0", "\x0b", "\x0c"]
LINE_ENDS = ["\n", "\n", "\r\n", "\r", "\n\n", "\u2028", "\x85", " \n"]


@st.composite
def results_text(draw) -> bytes:
    """Lines of mostly 6 fields (an id and five numbers), with odd numbers, ids, separators and breaks."""
    lines = []
    for _ in range(draw(st.integers(0, 6))):
        n = draw(st.sampled_from([6, 6, 6, 6, 5, 7, 0, 1]))
        first = draw(st.sampled_from(IDS[:3] + ("000009",)))
        rest = draw(st.lists(st.one_of(st.sampled_from(FIELDS[4:]), st.floats(allow_nan=True).map(repr),
                                       st.integers(-10**30, 10**30).map(str)), min_size=max(n - 1, 0),
                             max_size=max(n - 1, 0)))
        fields = [first, *rest][:n]
        line = ""
        for f in fields:
            line += f + draw(st.sampled_from(SEPARATORS))
        lines.append(line.rstrip(" ") + draw(st.sampled_from(LINE_ENDS)))
    text = "".join(lines)
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8", "latin-1", "utf-16"]))
    return text.encode(encoding, errors="replace")


def _read_results(folder: Path, data: bytes) -> tuple:
    for old in folder.glob("*.txt"):
        old.unlink()
    path = write(folder, "comp4_det_test_cat.txt", data)
    write(folder, "comp4_det_test_dog.txt", b"000002 0.5 1 1 5 5\n")
    result, err = clean(lambda: read_voc_results(folder, "test", CLASSES, IDS), path)
    return path, result, err


def _check_results_file(folder: Path, data: bytes) -> None:
    path, result, err = _read_results(folder, data)
    if err is not None:
        assert "comp4_det_test_cat.txt" in str(err)
        return
    boxes, labels, scores = result
    assert len(boxes) == len(labels) == len(scores) == len(IDS)
    for b, lab, s in zip(boxes, labels, scores):
        assert b.shape == (len(s), 4) and lab.shape == (len(s),) and np.isfinite(b).all() and np.isfinite(s).all()
        assert set(lab.tolist()) <= {1, 2}
    assert len(scores[IDS.index("000002")]) >= 1  # the dog file's line


def _check_fast_reader_equals_exact(folder: Path, data: bytes) -> None:
    """A line of one no-break space makes the file non-plain: the exact reader then reads it all."""
    _, fast, fast_err = _read_results(folder, data)
    _, exact, exact_err = _read_results(folder, data + "\n\u00a0\n".encode("utf-8"))
    if fast_err is not None or exact_err is not None:
        assert (fast_err is None) == (exact_err is None) or "UTF-8" in str(exact_err), (fast_err, exact_err)
        return
    for a, b in zip(fast, exact):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


test_voc_results_lines, test_voc_results_lines_long = fuzz(_check_results_file, data=results_text())
test_voc_results_fast_reader, test_voc_results_fast_reader_long = fuzz(
    _check_fast_reader_equals_exact, data=results_text().filter(lambda d: not d.startswith(b"\xff\xfe")))


# ----------------------------------------------------------------------------- inputs hypothesis found, kept
def test_found_an_xml_declaration_with_an_unknown_encoding_is_one_error(folder):
    """Was a LookupError traceback from expat (mutation of VALID: ``encoding="tf-8"``)."""
    path = write(folder, "enc.xml", VALID.replace(b'encoding="utf-8"', b'encoding="tf-8"'))
    with pytest.raises(InputError, match=r"enc\.xml: malformed XML \(unknown encoding: tf-8\)"):
        parse_voc_xml(path, CLASSES)
    with pytest.raises(InputError, match=r"enc\.xml: malformed XML"):
        parse_annotations([path], [path.read_bytes()])


def test_found_non_ascii_bytes_under_a_us_ascii_declaration_go_to_the_tree_parser(folder):
    """The fast path read the joined document as UTF-8 and accepted ``\xc2\x80`` in a file declared US-ASCII,
    which expat refuses (found 2026-12-06 by test_voc_xml_fast_path_long)."""
    bad = b"<?xml version='1.1' encoding='US-ASCII' standalone='yes'?><annotation><annotation>\xc2\x80</annotation></annotation>"
    assert parse_plain_files([b"<annotation>1</annotation>", bad])[1] is None
    _check_fast_path_equals_tree(folder, [b"<annotation>1</annotation>", bad])
    with pytest.raises(InputError, match=r"1\.xml: malformed XML"):
        parse_annotations(["0.xml", "1.xml"], [b"<annotation>1</annotation>", bad])
    ascii_only = VALID.replace(b'encoding="utf-8"', b'encoding="us-ascii"')
    assert ascii_only != VALID and parse_plain_files([ascii_only])[0].names == ["cat", "dog"]  # still fast


def test_the_valid_file_parses_as_written(folder):
    """The seed of the mutations, by hand: two objects, 1-based corners to 0-based, the part ignored."""
    ann = parse_voc_xml(write(folder, "ok.xml", VALID), CLASSES)
    np.testing.assert_array_equal(ann.boxes, [[0, 1, 29, 19], [4, 5, 49, 39]])
    assert ann.labels.tolist() == [1, 2] and ann.difficult.tolist() == [False, False] and ann.size == (40, 50)
    assert parse_plain_files([VALID])[0].names == ["cat", "dog"]
