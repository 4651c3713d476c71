"""A walk over the data elements of a MATLAB v5 file before ``scipy.io.loadmat`` reads it (issue 26).

scipy's MAT v5 reader (``scipy/io/matlab/_mio5_utils.pyx``, scipy 1.17.1) indexes a C table of
dtypes by the element type of a tag without checking it: a data element whose type is not one of
the format's (0, 8, 10, 11 or 19 and above — one flipped byte in a downloaded file) crashes the
interpreter with a segmentation fault, which no ``except`` can catch. Found by the SBD fuzzing
(``tests/test_fuzz_files.py::test_sbd_mats``). :func:`check_mat_elements` walks the element tags
(the 128-byte header, then every tag, into ``miMATRIX`` elements and through ``miCOMPRESSED`` ones)
and names the first bad tag, so the reader stops with one line instead.

The tag layout is the MAT-file format's (MathWorks, "MAT-File Format", ch. 1: a tag is a 32-bit type
and a 32-bit byte count, or, in the small data element format, a 16-bit count and a 16-bit type in
one 32-bit word; data is padded to 8 bytes, except inside ``miCOMPRESSED``).
"""
from __future__ import annotations

import struct
import zlib

__all__ = ["check_mat_elements"]

#: miINT8 … miUTF32, the element types of MAT v5 (8, 10 and 11 are reserved).
_TYPES = frozenset({1, 2, 3, 4, 5, 6, 7, 9, 12, 13, 14, 15, 16, 17, 18})
_MATRIX, _COMPRESSED = 14, 15
#: Decompressed bytes one miCOMPRESSED element may expand to here (a label map of SBD is ~200 KB).
MAX_DECOMPRESSED = 1 << 30


def check_mat_elements(data: bytes) -> str | None:
    """The problem of the first malformed element tag of a MAT v5 file's bytes, or None.

    Files that are not MAT v5 (v4, v7.3 / HDF5, too short to say) are left to ``loadmat``, which
    raises for them.
    """
    if len(data) < 128 or data[126:128] not in (b"IM", b"MI"):
        return None
    order = "<" if data[126:128] == b"IM" else ">"
    return _walk(data, 128, len(data), order, 0)


def _walk(data: bytes, pos: int, end: int, order: str, depth: int) -> str | None:
    if depth > 64:
        return "elements nested too deeply"
    while pos < end:
        if end - pos < 8:
            return None  # truncated: loadmat raises for it
        first, second = struct.unpack_from(order + "II", data, pos)
        if first >> 16:  # small data element: 16-bit count, 16-bit type, at most 4 bytes of data
            if first & 0xFFFF not in _TYPES:
                return f"an element of unknown type {first & 0xFFFF} at byte {pos}"
            pos += 8
            continue
        kind, size = first, second
        if kind not in _TYPES:
            return f"an element of unknown type {kind} at byte {pos}"
        body = pos + 8
        if kind == _MATRIX:
            problem = _walk(data, body, min(body + size, end), order, depth + 1)
            if problem:
                return problem
        elif kind == _COMPRESSED:
            try:
                inner = zlib.decompressobj().decompress(data[body:body + size], MAX_DECOMPRESSED)
            except zlib.error:
                return None  # loadmat raises for it
            problem = _walk(inner, 0, len(inner), order, depth + 1)
            if problem:
                return f"{problem} of the compressed element at byte {pos}"
            pos = body + size
            continue
        pos = body + size + (-size % 8)
    return None
