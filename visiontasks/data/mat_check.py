"""A walk over the data elements of a MATLAB v5 file before ``scipy.io.loadmat`` reads it (issue 26).

scipy's MAT v5 reader (``scipy/io/matlab/_mio5_utils.pyx``, scipy 1.17.1) indexes a C table of
dtypes by the element type of a tag without checking it: a data element whose type is not one of
the format's (0, 8, 10, 11 or 19 and above — one flipped byte in a downloaded file) crashes the
interpreter with a segmentation fault, which no ``except`` can catch. Found by the SBD fuzzing
(``tests/test_fuzz_files.py::test_sbd_mats``). :func:`check_mat_elements` walks the element tags
(the 128-byte header, then every tag, into ``miMATRIX`` elements and through ``miCOMPRESSED`` ones)
and names the first bad tag, so the reader stops with one line instead. The reader also trusts an
array's flags: a flipped complex bit or class (a uint8 map marked complex with no imaginary part, a
cell read as sparse) crashes it too, found by the next long fuzz run; so each ``miMATRIX``'s
sub-elements are checked against its class (:func:`_check_matrix`).

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
            problem = _check_matrix(data, body, min(body + size, end), order)
            if problem:
                return f"{problem} at byte {pos}"
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


def _tags(data: bytes, pos: int, end: int, order: str) -> list[tuple[int, int, int]] | None:
    """``[(type, data size, data offset)]`` of the elements in ``data[pos:end]`` (None: truncated)."""
    out = []
    while pos < end:
        if end - pos < 8:
            return None
        first, second = struct.unpack_from(order + "II", data, pos)
        if first >> 16:
            out.append((first & 0xFFFF, first >> 16, pos + 4))
            pos += 8
            continue
        out.append((first, second, pos + 8))
        pos = pos + 8 + second + (-second % 8)
    return out


def _check_matrix(data: bytes, pos: int, end: int, order: str) -> str | None:
    """The sub-elements of one ``miMATRIX`` against its class (MAT-File Format, ch. 1, "Array Data
    Element Formats"): scipy's reader trusts the array flags, and a flipped class or complex bit (a
    uint8 map marked complex with no imaginary part, a cell read as sparse) crashes it — found by
    the SBD fuzzing after the tag check above. Classes outside 1 … 15 (functions, opaque objects)
    are refused: no file a dataset reader expects holds them."""
    tags = _tags(data, pos, end, order)
    if tags is None or not tags:
        return None  # empty matrix (scipy reads it) or truncated (scipy raises)
    if len(tags) < 3 or tags[0][0] != 6 or tags[0][1] != 8 or tags[1][0] != 5 or tags[2][0] != 1:
        return "an array without its flags, dimensions and name"
    flags = struct.unpack_from(order + "I", data, tags[0][2])[0]
    cls, is_complex = flags & 0xFF, bool(flags & 0x800)
    if tags[1][1] < 8 or tags[1][1] % 4 or tags[1][2] + tags[1][1] > end:
        return "an array with malformed dimensions"
    dims = struct.unpack_from(order + f"{tags[1][1] // 4}i", data, tags[1][2])
    if min(dims) < 0:
        return f"an array with negative dimensions {dims}"
    count = 1
    for d in dims:
        count *= d
    rest = tags[3:]
    matrices = sum(t == _MATRIX for t, _, _ in rest)
    if 6 <= cls <= 15:  # numeric: real part, imaginary part when complex
        ok = len(rest) == 1 + is_complex and not matrices
    elif cls == 4:  # char
        ok = len(rest) == 1 and not is_complex and not matrices
    elif cls == 5:  # sparse: ir, jc, real, imaginary when complex
        ok = len(rest) == 3 + is_complex and not matrices
    elif cls == 1:  # cell: one array per element
        ok = not is_complex and len(rest) == count and matrices == count
    elif cls in (2, 3):  # struct / object: [class name,] field-name length, field names, arrays
        head = 3 if cls == 3 else 2
        fields = 0
        if len(rest) >= head and rest[head - 2][0] == 5 and rest[head - 2][1] == 4:
            width = struct.unpack_from(order + "i", data, rest[head - 2][2])[0]
            fields = rest[head - 1][1] // width if width > 0 else -1
        ok = (not is_complex and fields >= 0 and len(rest) == head + fields * count
              and matrices == fields * count)
    else:
        return f"an array of unsupported class {cls}"
    return None if ok else f"an array of class {cls}{' (complex)' if is_complex else ''} whose parts do not match it"

