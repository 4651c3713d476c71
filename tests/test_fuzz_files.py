"""Property-based tests of segmentation label PNGs and proposal files (``.npy``, ``manifest.json``) — issue 26.

Entry points: :func:`visiontasks.evaluation.seg_files.score_label_pngs` (``tools/eval.py seg`` on
a folder of predicted PNGs: predictions and ground truth are read with
:func:`visiontasks.data.read_label_png`, as the segmentation dataset reads its masks), and the
proposal store of Fast R-CNN / SPP-net / R-CNN training (:class:`visiontasks.data.proposals.ProposalStore`:
the manifest is checked against the wanted parameters, each image's ``.npy`` is read on demand).
Generated: images of every PIL mode, size and format saved as ``.png`` then byte-mutated or
truncated; ``.npy`` files of any dtype and shape, hand-made ``.npy`` headers, mutated bytes; any
JSON as a manifest.
"""
from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from _fuzz import clean, fuzz, write
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from visiontasks.data.proposals import MANIFEST, ProposalStore, write_manifest
from visiontasks.errors import InputError
from visiontasks.evaluation.seg_files import score_label_pngs

NAMES = ("background", "cat", "dog")
GT = np.array([[0, 0, 1, 1, 255], [0, 2, 2, 1, 255], [0, 0, 0, 0, 0], [2, 2, 2, 2, 2]], dtype=np.uint8)  # 4x5
MODES = ["P", "P", "L", "L", "1", "RGB", "RGBA", "LA", "PA", "I;16", "I", "F", "CMYK"]


def _png_bytes(mode: str, array: np.ndarray, fmt: str) -> bytes:
    img = Image.fromarray(array, "L").convert(mode) if mode not in ("P", "L") else Image.fromarray(array, "L")
    if mode == "P":
        img = img.convert("P")
    buf = io.BytesIO()
    try:
        img.save(buf, fmt)
    except (OSError, ValueError, KeyError):  # a mode this format cannot store
        buf = io.BytesIO()
        img.convert("L").save(buf, fmt)
    return buf.getvalue()


@st.composite
def label_images(draw) -> bytes:
    """A label image (any mode, size and format, written under a .png name), maybe mutated."""
    shape = draw(st.sampled_from([GT.shape, GT.shape, GT.shape, (5, 4), (1, 1), (4, 6)]))
    array = draw(hnp.arrays(np.uint8, shape, elements=st.sampled_from([0, 1, 2, 3, 255, 7])))
    data = _png_bytes(draw(st.sampled_from(MODES)), array, draw(st.sampled_from(["PNG"] * 5 + ["GIF", "BMP", "TIFF",
                                                                                               "JPEG", "WEBP"])))
    edit = draw(st.sampled_from(["none", "none", "truncate", "flip", "insert"]))
    if edit == "truncate":
        data = data[:draw(st.integers(0, len(data) - 1))]
    elif edit == "flip":
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1:]
    elif edit == "insert":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
    return data


@pytest.fixture(scope="module")
def voc(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fuzz_seg")
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("000001\n")
    (root / "SegmentationClass").mkdir()
    (root / "pred").mkdir()
    return root


def _check_label_png(voc: Path, data: bytes, which: str) -> None:
    good = _png_bytes("P", GT, "PNG")
    gt = write(voc / "SegmentationClass", "000001.png", data if which == "gt" else good)
    pred = write(voc / "pred", "000001.png", data if which == "pred" else good)
    result, err = clean(lambda: score_label_pngs(voc, "val", voc / "pred", NAMES), pred if which == "pred" else gt)
    if err is None:
        assert 0.0 <= result["mIoU"] <= 1.0 or math.isnan(result["mIoU"]), result


test_label_pngs, test_label_pngs_long = fuzz(_check_label_png, data=label_images(),
                                             which=st.sampled_from(["pred", "gt"]))


# ----------------------------------------------------------------------------- proposal files
DTYPES = ["<f4", "<f8", "<f2", ">f4", "<i4", "<u1", "<i8", "<u8", "|b1", "<c8", "<U3", "|S2", "<M8[s]", "<m8[s]",
          "[('a', '<f4'), ('b', '<f4')]", "|O", "<V4"]


@st.composite
def npy_files(draw) -> bytes:
    kind = draw(st.sampled_from(["array", "array", "header", "mutated"]))
    if kind == "array":
        dtype = draw(st.sampled_from([np.float32, np.float64, np.float16, np.int64, np.uint8, np.int8, np.bool_,
                                      np.complex64]))
        shape = draw(st.sampled_from([(3, 4), (1, 4), (0, 4), (4,), (2, 5), (2, 4, 1), (), (5, 4)]))
        arr = draw(hnp.arrays(dtype, shape))
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        return buf.getvalue()
    if kind == "header":  # a hand-written header: any dtype, order and shape, then some data bytes
        shape = draw(st.lists(st.integers(-2, 2**40), max_size=3).map(tuple))
        descr = draw(st.sampled_from(DTYPES))
        descr_text = descr if descr.startswith("[") else repr(descr)
        header = f"{{'descr': {descr_text}, 'fortran_order': {draw(st.booleans())}, 'shape': {shape}, }}"
        header = draw(st.sampled_from([header, header, header[:-3], "{}", "[1, 2]", "{'descr': '<f4'}"]))
        major = draw(st.sampled_from([1, 1, 2, 3, 9]))
        text = header.encode("latin-1")
        pad = 64 - (10 + len(text) + 1) % 64 if major == 1 else 64 - (12 + len(text) + 1) % 64
        text = text + b" " * pad + b"\n"
        length = len(text).to_bytes(2 if major == 1 else 4, "little")
        return b"\x93NUMPY" + bytes([major, 0]) + length + text + draw(st.binary(max_size=64))
    valid = io.BytesIO()
    np.save(valid, np.array([[0, 0, 9, 9], [1, 2, 3, 4]], np.float32))
    data = bytearray(valid.getvalue())
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data) - 1))
        data[at] = draw(st.integers(0, 255))
    return bytes(data[:draw(st.integers(0, len(data)))]) if draw(st.booleans()) else bytes(data)


PARAMS = {"method": "selective_search", "mode": "fast", "resize_width": 500, "min_size": 20, "max_proposals": None,
          "seed": 1}
json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=4)),
                           lambda kids: st.one_of(st.lists(kids, max_size=3),
                                                  st.dictionaries(st.text(max_size=6), kids, max_size=3)),
                           max_leaves=10)
manifests = st.one_of(
    json_values.map(json.dumps),
    st.builds(lambda fmt, params: json.dumps({"format": fmt, "params": params}),
              st.sampled_from(["visiontasks-proposals/1", "visiontasks-proposals/2", None]),
              st.one_of(st.just(PARAMS), st.dictionaries(st.sampled_from(sorted(PARAMS) + ["x"]), json_values),
                        json_values)),
    st.binary(max_size=20).map(lambda b: b.decode("latin-1")),
)


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz_proposals")
    write_manifest(folder, PARAMS)
    return folder


def _check_npy(store_dir: Path, data: bytes) -> None:
    path = write(store_dir, "000001.npy", data)
    boxes, err = clean(lambda: ProposalStore(store_dir, PARAMS)("000001"), path)
    if err is None:
        assert boxes.dtype == torch.float32 and boxes.ndim == 2 and boxes.shape[1] == 4 and len(boxes) >= 1
        assert torch.isfinite(boxes).all() and (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()


def _check_manifest(store_dir: Path, text: str) -> None:
    folder = store_dir / "m"
    folder.mkdir(exist_ok=True)
    path = write(folder, MANIFEST, text)
    store, err = clean(lambda: ProposalStore(folder, PARAMS), path)
    assert err is not None or json.loads(text)["params"] == PARAMS


test_proposal_npy, test_proposal_npy_long = fuzz(_check_npy, data=npy_files())
test_proposal_manifest, test_proposal_manifest_long = fuzz(_check_manifest, text=manifests)


# ----------------------------------------------------------------------------- inputs hypothesis found, kept
NUL_HEADER = (b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (2, 4\x00, }" + b" " * 58
              + b"\n" + b"\x00" * 32)


def test_found_an_npy_header_numpy_cannot_evaluate_is_one_error(store_dir):
    """Was a tokenize.TokenError traceback (numpy's header parser, after a SyntaxError on the NUL byte)."""
    write(store_dir, "nul.npy", NUL_HEADER)
    with pytest.raises(InputError, match=r"nul\.npy: cannot read proposals \(TokenError"):
        ProposalStore(store_dir)("nul")


def test_a_deeply_nested_manifest_is_one_error(store_dir):
    folder = store_dir / "deep"
    folder.mkdir(exist_ok=True)
    write(folder, MANIFEST, "[" * 100_000)  # was a RecursionError traceback
    with pytest.raises(InputError, match="manifest.json: proposals manifest is not usable JSON: nested too deeply"):
        ProposalStore(folder, PARAMS)


def test_a_label_png_declaring_a_decompression_bomb_is_one_error(voc):
    """A 100000x100000 palette PNG header (a few bytes): was PIL's DecompressionBombError traceback."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    data = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 8, 3, 0, 0, 0))
            + chunk(b"PLTE", bytes(6)) + chunk(b"IDAT", zlib.compress(b"\x00" * 10)) + chunk(b"IEND", b""))
    write(voc / "SegmentationClass", "000001.png", _png_bytes("P", GT, "PNG"))
    pred = write(voc / "pred", "000001.png", data)
    with pytest.raises(InputError, match="pred/000001.png: cannot read label PNG .*decompression bomb"):
        score_label_pngs(voc, "val", voc / "pred", NAMES)


def test_a_sound_label_png_scores_one(voc):
    write(voc / "SegmentationClass", "000001.png", _png_bytes("P", GT, "PNG"))
    write(voc / "pred", "000001.png", _png_bytes("P", np.where(GT == 255, 0, GT).astype(np.uint8), "PNG"))
    assert score_label_pngs(voc, "val", voc / "pred", NAMES)["mIoU"] == pytest.approx(1.0)


# ----------------------------------------------------------------------------- SBD .mat files
import scipy.io  # noqa: E402
import scipy.sparse  # noqa: E402

from visiontasks.data.sbd import SBDSegmentation  # noqa: E402

SBD_H, SBD_W = 3, 4
SBD_LABELS = [0, 1, 2, 20, 255, 21, 254, -1, 300, 65535, 2**40]
SBD_DTYPES = [np.uint8, np.uint8, np.uint8, np.int16, np.uint16, np.int32, np.int64, np.uint64, np.float64,
              np.float32, np.bool_, np.complex128, np.int8]


@st.composite
def _sbd_arrays(draw) -> object:
    """What a ``Segmentation`` field may hold: label maps of odd dtypes, shapes and values, strings, cells,
    sparse matrices, nested structs."""
    kind = draw(st.sampled_from(["map"] * 6 + ["float", "string", "cell", "sparse", "struct", "empty", "scalar"]))
    shape = draw(st.sampled_from([(SBD_H, SBD_W)] * 4 + [(SBD_W, SBD_H), (1, SBD_W), (SBD_H, SBD_W, 2),
                                                         (SBD_H * SBD_W,), (0, SBD_W)]))
    if kind == "map":
        dtype = draw(st.sampled_from(SBD_DTYPES))
        values = np.array(draw(st.lists(st.sampled_from(SBD_LABELS), min_size=1, max_size=4)))
        with np.errstate(all="ignore"):
            return draw(hnp.arrays(np.int64, shape, elements=st.sampled_from(values.tolist()))).astype(dtype)
    if kind == "float":
        return draw(hnp.arrays(np.float64, shape, elements=st.sampled_from([0.0, 1.0, 0.5, np.nan, np.inf, -np.inf,
                                                                             1e300, -0.0, 20.0, 255.0])))
    if kind == "string":
        return draw(st.text(max_size=5))
    if kind == "cell":
        return [np.zeros((SBD_H, SBD_W), np.uint8), draw(st.text(max_size=3))][:draw(st.integers(1, 2))]
    if kind == "sparse":
        return scipy.sparse.csc_matrix(np.eye(SBD_H, SBD_W) * draw(st.sampled_from([1, 20, 255, 0.5])))
    if kind == "struct":
        return {"Segmentation": np.zeros((SBD_H, SBD_W), np.uint8)}
    if kind == "empty":
        return np.zeros(draw(st.sampled_from([(0, 0), (SBD_H, 0), (0,)])), np.uint8)
    return draw(st.sampled_from([np.uint8(3), 7, 2.5, True]))


@st.composite
def sbd_mats(draw) -> bytes:
    """An SBD ``cls`` / ``inst`` file: ``savemat`` of random structures (the right or a wrong variable, a
    struct array, missing or extra fields), MATLAB v4 or v5, compressed or not, then maybe truncated,
    bit-flipped or given inserted bytes; or random bytes."""
    struct = draw(st.sampled_from(["GTcls", "GTinst"]))
    name = draw(st.sampled_from([struct] * 4 + ["GTcls" if struct == "GTinst" else "GTinst", "Segmentation", "x"]))
    shape = draw(st.sampled_from(["dict", "dict", "dict", "array", "plain", "records"]))
    field = draw(_sbd_arrays())
    extra = draw(st.dictionaries(st.sampled_from(["CategoriesPresent", "Boundaries", "segmentation", "seg"]),
                                 _sbd_arrays(), max_size=2))
    if shape == "dict":
        value = {**extra, "Segmentation": field} if draw(st.booleans()) or not extra else extra
    elif shape == "array":  # a 1x2 struct array: the reader takes the first element
        value = np.array([(field,), (np.zeros((SBD_H, SBD_W), np.uint8),)], dtype=[("Segmentation", object)])
    elif shape == "records":
        value = np.zeros(draw(st.sampled_from([(0,), (1,), (2, 1)])), dtype=[("Segmentation", object)])
        for k in range(value.size):
            value["Segmentation"].flat[k] = field
    else:
        value = field
    buf = io.BytesIO()
    fmt = draw(st.sampled_from(["5", "5", "5", "4"]))
    try:
        scipy.io.savemat(buf, {name: value}, format=fmt, do_compression=draw(st.booleans()), oned_as="row")
        data = buf.getvalue()
    except Exception:  # noqa: BLE001 — a structure this format cannot store: random bytes instead
        data = draw(st.binary(max_size=200))
    edit = draw(st.sampled_from(["none"] * 4 + ["truncate", "flip", "insert", "random"]))
    if edit == "truncate" and data:
        data = data[:draw(st.integers(0, len(data) - 1))]
    elif edit == "flip" and data:
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1:]
    elif edit == "insert":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
    elif edit == "random":
        data = draw(st.binary(max_size=300))
    return data


def _sbd_good(kind: str) -> bytes:
    buf = io.BytesIO()
    seg = np.zeros((SBD_H, SBD_W), np.uint8)
    seg[1:, 2:] = 1 if kind == "inst" else 20
    scipy.io.savemat(buf, {"GTinst" if kind == "inst" else "GTcls": {"Segmentation": seg}})
    return buf.getvalue()


@pytest.fixture(scope="module")
def sbd_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fuzz_sbd")
    (root / "img").mkdir()
    (root / "cls").mkdir()
    (root / "inst").mkdir()
    Image.fromarray(np.full((SBD_H, SBD_W, 3), 128, np.uint8)).save(root / "img" / "a.jpg")
    (root / "train.txt").write_text("a\n")
    write(root / "cls", "a.mat", _sbd_good("cls"))
    write(root / "inst", "a.mat", _sbd_good("inst"))
    return root


def _check_sbd_mat(sbd_root: Path, data: bytes, which: str) -> None:
    """A generated ``cls`` file read as the dataset reads an item, or an ``inst`` file (with a sound ``cls``)
    read by :meth:`SBDSegmentation.get_instances`: valid maps or one line naming the file."""
    write(sbd_root / "cls", "a.mat", data if which == "cls" else _sbd_good("cls"))
    path = write(sbd_root / "inst", "a.mat", data if which == "inst" else _sbd_good("inst"))
    ds = SBDSegmentation(sbd_root, "train")
    if which == "cls":
        target, err = clean(lambda: ds.get_annotation(0), sbd_root / "cls" / "a.mat")
        if err is None:
            mask = target["mask"]
            assert mask.dtype == torch.int64 and tuple(mask.shape) == (SBD_H, SBD_W)
            assert bool((((mask >= 0) & (mask <= 20)) | (mask == 255)).all()), mask
    else:
        inst, err = clean(lambda: ds.get_instances(0), path)
        if err is None:
            m = inst["instance_mask"]
            assert m.dtype == torch.int64 and tuple(m.shape) == (SBD_H, SBD_W) and bool((m >= 0).all())
            assert len(inst["instance_ids"]) == len(inst["labels"])
            assert bool(((inst["labels"] >= 0) & (inst["labels"] <= 20)).all())


test_sbd_mats, test_sbd_mats_long = fuzz(_check_sbd_mat, data=sbd_mats(), which=st.sampled_from(["cls", "inst"]))


def _with_data_type(data: bytes, kind: int, compressed: bool) -> bytes:
    """``data`` (a savemat file of one 2-D int32 variable) with its data element's type set to ``kind``."""
    import struct
    import zlib

    body = bytearray(zlib.decompress(data[136:]) if compressed else data[128:])
    at = 8 + 16 + 16  # the miMATRIX tag, array flags, dimensions, then the name (one small element)
    name_bytes = struct.unpack_from("<I", body, at + 4)[0]
    at += 8 if struct.unpack_from("<I", body, at)[0] >> 16 else 8 + -(-name_bytes // 8) * 8
    assert struct.unpack_from("<II", body, at) == (5, 48)  # miINT32, 12 values
    struct.pack_into("<I", body, at, kind)
    if not compressed:
        return data[:128] + bytes(body)
    packed = zlib.compress(bytes(body))
    return data[:128] + struct.pack("<II", 15, len(packed)) + packed


@pytest.mark.parametrize("compressed", [False, True])
@pytest.mark.parametrize("kind", [0, 8, 19, 255])
def test_found_a_mat_element_of_unknown_type_is_one_error_not_a_segfault(sbd_root, kind, compressed):
    """scipy 1.17's loadmat crashed the interpreter (SIGSEGV, no exception) on a data element whose type is not
    one of MAT v5's — a flipped byte (hypothesis: a name tag's length 0 -> 2 shifted the data tag). Now checked
    before loadmat (visiontasks.data.mat_check)."""
    buf = io.BytesIO()
    scipy.io.savemat(buf, {"GTcls": np.arange(12, dtype=np.int32).reshape(3, 4)}, do_compression=compressed)
    path = write(sbd_root / "cls", "a.mat", _with_data_type(buf.getvalue(), kind, compressed))
    with pytest.raises(InputError, match=rf"a\.mat: cannot read MATLAB file \(truncated or corrupt\?\): an element "
                                         rf"of unknown type {kind} at byte \d+"):
        SBDSegmentation(sbd_root, "train").get_annotation(0)
    assert path.exists()


def _with_flags_byte(data: bytes, cls: int, offset: int, xor: int) -> bytes:
    """``data`` with byte ``offset`` of the first array flags of class ``cls`` XOR-ed with ``xor``."""
    flags = b"\x06\x00\x00\x00\x08\x00\x00\x00"  # miUINT32, 8 bytes: the array flags sub-element
    at = next(i for i in range(128, len(data) - 8) if data[i:i + 8] == flags and data[i + 8] == cls) + 8 + offset
    return data[:at] + bytes([data[at] ^ xor]) + data[at + 1:]


@pytest.mark.parametrize("cls, offset, xor, what", [(9, 1, 0x08, "class 9 \\(complex\\)"),  # uint8 map marked complex
                                                    (1, 0, 0x04, "class 5"),  # the cell read as sparse
                                                    (1, 0, 0x08, "class 9")])  # the cell read as uint8
def test_found_an_array_whose_parts_do_not_match_its_class_is_one_error_not_a_segfault(sbd_root, cls, offset, xor,
                                                                                        what):
    """After the tag check, the long SBD fuzz still crashed scipy 1.17's loadmat (SIGSEGV) on one flipped bit
    of an array's flags: the Segmentation map marked complex with no imaginary part, the Boundaries cell
    given a numeric or sparse class. Each matrix's parts are now checked against its class
    (visiontasks.data.mat_check; each of these three files crashes ``scipy.io.loadmat`` itself)."""
    buf = io.BytesIO()
    seg = np.zeros((SBD_H, SBD_W), np.uint8)
    seg[1:, 2:] = 20
    scipy.io.savemat(buf, {"GTcls": {"Segmentation": seg, "Boundaries": [seg, "ab"]}}, oned_as="row")
    write(sbd_root / "cls", "a.mat", _with_flags_byte(buf.getvalue(), cls, offset, xor))
    with pytest.raises(InputError, match=rf"a\.mat: cannot read MATLAB file \(truncated or corrupt\?\): an array of "
                                         rf"{what} whose parts do not match it at byte \d+"):
        SBDSegmentation(sbd_root, "train").get_annotation(0)


@pytest.mark.parametrize("compressed", [False, True])
def test_sound_files_of_every_array_class_pass_the_check(compressed):
    """The class check refuses nothing savemat writes: numeric, logical, complex, char, cell, struct arrays,
    sparse (real, logical, complex), empty and nested arrays."""
    from visiontasks.data.mat_check import check_mat_elements

    seg = np.zeros((SBD_H, SBD_W), np.uint8)
    seg[1:, 2:] = 7
    sparse = scipy.sparse.csc_matrix(np.eye(SBD_H, SBD_W) > 0)
    variables = {"GTcls": {"Segmentation": seg, "Boundaries": np.array([[sparse], [sparse]], dtype=object),
                           "CategoriesPresent": np.array([[7.0]])},
                 "GTinst": {"Segmentation": seg, "Categories": np.array([[7], [15]]),
                            "Boundaries": [sparse, scipy.sparse.csc_matrix((SBD_H, SBD_W))]},
                 "z": np.arange(6).reshape(2, 3) * (1 + 2j), "zs": scipy.sparse.csc_matrix(np.eye(3) * (1 + 1j)),
                 "s": "héllo", "e": "", "cells": np.array(["ab", "cd"], dtype=object),
                 "st": np.zeros((2, 3), dtype=[("x", object), ("y", object)]), "none": {}, "b": np.eye(3) > 0,
                 "e0": np.zeros((0, 0)), "e1": np.zeros((0, 5), np.uint8), "c0": np.empty((0, 0), dtype=object),
                 "n": {"a": {"b": [1, "x", {"d": seg}]}}}
    for name, value in variables.items():
        buf = io.BytesIO()
        scipy.io.savemat(buf, {name: value}, do_compression=compressed, oned_as="row")
        assert check_mat_elements(buf.getvalue()) is None, name
        scipy.io.loadmat(io.BytesIO(buf.getvalue()))


@pytest.mark.parametrize("value, dtype", [(1e300, np.float64), (2**63 + 5, np.uint64)])
def test_found_a_label_beyond_int64_is_one_error_not_a_wrapped_value(sbd_root, value, dtype):
    """A float label of 1e300 was cast to int64 (RuntimeWarning, INT64_MIN in the message); a uint64 label of
    2**63 + 5 wrapped to a negative one."""
    seg = np.zeros((SBD_H, SBD_W), dtype)
    seg[0, 0] = value
    buf = io.BytesIO()
    scipy.io.savemat(buf, {"GTcls": {"Segmentation": seg}})
    write(sbd_root / "cls", "a.mat", buf.getvalue())
    shown = "1e\\+300" if dtype == np.float64 else str(value)
    with pytest.raises(InputError, match=rf"a\.mat: GTcls\.Segmentation holds label {shown}, not a class index"):
        SBDSegmentation(sbd_root, "train").get_annotation(0)


def test_a_sound_sbd_mat_reads(sbd_root):
    write(sbd_root / "cls", "a.mat", _sbd_good("cls"))
    write(sbd_root / "inst", "a.mat", _sbd_good("inst"))
    ds = SBDSegmentation(sbd_root, "train")
    assert ds.get_annotation(0)["mask"].tolist() == [[0, 0, 0, 0], [0, 0, 20, 20], [0, 0, 20, 20]]
    inst = ds.get_instances(0)
    assert inst["instance_ids"].tolist() == [1] and inst["labels"].tolist() == [20]
