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
