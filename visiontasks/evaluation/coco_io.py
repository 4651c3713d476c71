"""COCO ground truth and results files, checked before pycocotools sees them (torch-free).

pycocotools answers malformed input with ``KeyError``/``TypeError`` tracebacks deep inside
``COCO.createIndex`` or ``loadRes``; here every problem is one :class:`InputError` naming the file
(or, for in-memory lists, a ``ValueError`` naming the entry) and what is wrong.

Also handled: a results file that is a dict of equal-length lists (``{"image_id": [...],
"category_id": [...], "bbox": [...], "score": [...]}``, a common export of data-frame tools) is
converted to the list of objects pycocotools expects, with one ``warning:`` line saying so.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from pycocotools.coco import COCO

from visiontasks.errors import InputError
from visiontasks.evaluation.report import warn

__all__ = ["load_coco_gt", "load_coco_results", "check_results", "check_coco_results_memory",
           "COCO_BYTES_PER_FILE_BYTE"]


def _read_json(path: Path, what: str) -> Any:
    if path.is_dir():
        raise InputError(path, f"is a folder, expected a COCO {what} json file")
    if not path.is_file():
        raise InputError(path, f"COCO {what} file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise InputError(path, "not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise InputError(path, f"not valid JSON ({exc})") from None
    except RecursionError:  # thousands of nested [ or { (tests/test_fuzz_coco.py)
        raise InputError(path, "not a usable JSON file: nested too deeply") from None


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _box_problem(box: Any) -> str | None:
    if not isinstance(box, (list, tuple)) or len(box) != 4 or not all(_finite(v) for v in box):
        return f"bbox must be 4 finite numbers [x, y, w, h], got {box!r}"
    if box[2] < 0 or box[3] < 0:
        return f"bbox has a negative width or height: {box!r}"
    return None


def _is_id(value: Any) -> bool:
    """Whether ``value`` can be a COCO id: a JSON number or string (a list or an object cannot be
    looked up; found by tests/test_fuzz_coco.py)."""
    return isinstance(value, (int, float, str)) and not isinstance(value, bool)


def _check_gt(data: Any, path: Path, iou_type: str) -> None:
    if not isinstance(data, dict):
        raise InputError(path, f"a COCO instances file must be a JSON object, got a {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list) or not all(isinstance(e, dict) for e in data[key]):
            raise InputError(path, f"not a COCO instances file: {key!r} must be a list of objects")
    images = set()
    for k, img in enumerate(data["images"]):
        if not _is_id(img.get("id")):
            raise InputError(path, f"images[{k}] needs an 'id' (a number or a string), got {img.get('id')!r}")
        if iou_type == "segm" and not all(_finite(img.get(s)) for s in ("height", "width")):
            raise InputError(path, f"images[{k}] needs numeric 'height' and 'width' for segm evaluation")
        images.add(img["id"])
    cats = set()
    for k, cat in enumerate(data["categories"]):
        if not _is_id(cat.get("id")) or not isinstance(cat.get("name"), str):
            raise InputError(path, f"categories[{k}] needs an 'id' and a 'name'")
        cats.add(cat["id"])
    for k, ann in enumerate(data["annotations"]):
        if not _is_id(ann.get("image_id")) or ann["image_id"] not in images:
            raise InputError(path, f"annotations[{k}] has image_id {ann.get('image_id')!r}, not in 'images'")
        if not _is_id(ann.get("category_id")) or ann["category_id"] not in cats:
            raise InputError(path, f"annotations[{k}] has category_id {ann.get('category_id')!r}, "
                                   "not in 'categories'")
        problem = _box_problem(ann.get("bbox"))
        if problem:
            raise InputError(path, f"annotations[{k}]: {problem}")
        if iou_type == "segm" and not isinstance(ann.get("segmentation"), (list, dict)):
            raise InputError(path, f"annotations[{k}] has no 'segmentation' (needed for segm evaluation)")
        if "area" in ann and not _finite(ann["area"]):
            raise InputError(path, f"annotations[{k}] has a non-numeric area {ann['area']!r}")


def load_coco_gt(path: str | os.PathLike[str], iou_type: str = "bbox") -> COCO:
    """Loads and checks a COCO instances json, quietly.

    Args:
        path: the json file.
        iou_type: ``"bbox"`` or ``"segm"`` (which fields the annotations must have).

    Raises:
        InputError: missing, not JSON, or not a well-formed instances file (what and where).
    """
    path = Path(path)
    data = _read_json(path, "annotation")
    _check_gt(data, path, iou_type)
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _dict_of_lists(data: Mapping[str, Any], path: Path) -> list[dict]:
    lengths = {k: len(v) for k, v in data.items() if isinstance(v, list)}
    if not lengths or len(lengths) != len(data) or len(set(lengths.values())) != 1:
        raise InputError(path, "a COCO results file must be a JSON list of objects (or a dict of "
                               f"equal-length lists), got a dict with keys {sorted(data)!r}")
    n = next(iter(lengths.values()))
    warn(f"{path}: a dict of {len(data)} lists ({', '.join(sorted(data))}), converted to a list of {n} "
         "result objects")
    return [{k: data[k][i] for k in data} for i in range(n)]


#: Peak memory of scoring a COCO results json, per byte of the file: ``json.loads`` of the text, then
#: pycocotools' ``loadRes`` (which adds ``area``, ``id``, ``iscrowd`` and, for boxes, an 8-number
#: ``segmentation`` polygon to every result) and ``COCOeval`` (its per-image, per-category matches).
#: Measured by ``bench/eval_large.py`` (docs/RELIABILITY.md): 200,000 boxes, a 15 MiB file, peak RSS
#: 751 MiB (50x the file, the process's own ~100 MiB included), as much as pycocotools alone; rounded up.
COCO_BYTES_PER_FILE_BYTE = 60


def check_coco_results_memory(path: str | os.PathLike[str]) -> None:
    """Refuses, in one line naming it, a results json whose scoring needs more memory than is available.

    Raises:
        InputError: ``COCO_BYTES_PER_FILE_BYTE`` times the file's size is more than the memory available.
    """
    from visiontasks.evaluation.memory import check_memory

    try:
        size = Path(path).stat().st_size
    except OSError:
        return  # the reader names the problem
    check_memory(size * COCO_BYTES_PER_FILE_BYTE, path, f"scoring this {size / 2**20:,.0f} MiB COCO results json "
                                                        "with pycocotools")


def load_coco_results(path: str | os.PathLike[str]) -> list[dict]:
    """Reads a COCO results json: a list of objects, or a dict of equal-length lists (converted).

    Raises:
        InputError: missing, not JSON, or of another shape.
    """
    path = Path(path)
    data = _read_json(path, "results")
    if isinstance(data, dict):
        data = _dict_of_lists(data, path)
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise InputError(path, "a COCO results file must be a JSON list of objects")
    return data


def check_results(results: Sequence[Mapping[str, Any]], coco: COCO, iou_type: str,
                  source: str | os.PathLike[str] | None = None) -> None:
    """Checks every result entry against the ground truth.

    Args:
        results: the result dicts.
        coco: the ground truth.
        iou_type: ``"bbox"`` or ``"segm"``.
        source: the results file, named in the error (None: a ``ValueError`` naming the entry).

    Raises:
        InputError: (with ``source``) an entry lacks a key, has a non-finite score or a bad box,
            or names an image/category the ground truth lacks.
    """
    needed = ("image_id", "category_id", "score", "bbox" if iou_type == "bbox" else "segmentation")
    for k, res in enumerate(results):
        problem = None
        missing = [key for key in needed if key not in res]
        if missing:
            problem = f"lacks {missing!r}: {dict(res)!r}"[:300]
        elif not _finite(res["score"]):
            problem = f"has a score that is not a finite number: {res['score']!r}"
        elif not _is_id(res["image_id"]) or res["image_id"] not in coco.imgs:
            problem = f"is for image {res['image_id']!r}, which the ground truth does not have"
        elif not _is_id(res["category_id"]) or res["category_id"] not in coco.cats:
            problem = f"has category {res['category_id']!r}, unknown to the ground truth"
        elif iou_type == "bbox":
            problem = _box_problem(res["bbox"])
        if problem:
            if source is None:
                raise ValueError(f"result {k} {problem}")
            raise InputError(source, f"result {k} {problem}")
