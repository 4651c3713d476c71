"""The data doctor: one table of what is wrong with a split, before a run finds it the hard way.

:func:`diagnose` takes the raw records of :func:`visiontasks.data.doctor_read.read_records` and
counts, per finding, the images or boxes that have it; each finding has a severity:

- ``FAIL``: training would stop or break on it — a missing or unreadable image file, an annotation
  the reader refuses (file and line named), an image whose size differs from its annotation's, a box
  wholly outside its image (refused by the readers), a degenerate box (zero or negative width or
  height: its regression target is ``log 0``, the NaN losses of torchvision#2235; COCO's reader
  drops them, so there it is a warning), a split without images or without any object;
- ``warn``: it trains, but something is likely wrong — boxes partly outside the image (clipped),
  tiny boxes (a side < 8 px), exact duplicate boxes, class imbalance (a class with no object or
  under a tenth of the largest class's count), boxes no anchor of the chosen config matches at
  IoU >= 0.5 after the config's resize;
- ``info``: counts (images, objects, images without objects, image sizes).

:func:`exit_code` is 1 when any finding FAILs, else 0 (tools/check_data.py; 2 is bad input).

Shape shorthand: N = boxes of an image, A = anchors of an image.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from visiontasks.data.doctor_read import ImageRecord

__all__ = ["Finding", "Report", "diagnose", "format_table", "exit_code", "AnchorFn", "TINY", "COVER_IOU"]

TINY = 8.0  #: a box side under this many pixels is tiny
COVER_IOU = 0.5  #: an anchor must reach this IoU with a box to cover it (Faster R-CNN's RPN fg threshold is 0.7)
IMBALANCE = 10.0  #: largest class count / a class's count above this is flagged

#: ``anchor_fn(H, W) -> (anchors (A, 4) float xyxy in resized pixels, (sx, sy) resized per original pixel)``
AnchorFn = Callable[[int, int], tuple]


@dataclass
class Finding:
    """One row of the table: what, how many, how bad, an example."""

    name: str
    count: int | str
    severity: str = "ok"  # ok | info | warn | FAIL
    example: str = ""


@dataclass
class Report:
    """The doctor's findings of one split (rows in table order) and its per-class counts."""

    findings: list[Finding] = field(default_factory=list)
    per_class: dict[str, int] = field(default_factory=dict)

    def row(self, name: str) -> Finding:
        """The finding called ``name``."""
        return next(f for f in self.findings if f.name == name)


def _header_size(rec: ImageRecord) -> tuple[tuple[int, int] | None, str | None]:
    from visiontasks.data.voc import image_size
    from visiontasks.errors import InputError

    if not rec.path.is_file():
        return None, "missing"
    try:
        return image_size(rec.path), None
    except InputError as exc:
        return None, str(exc)


def _coverage(boxes: np.ndarray, size: tuple[int, int], anchor_fn: AnchorFn) -> np.ndarray:
    """(N,) bool: which boxes some anchor matches at IoU >= :data:`COVER_IOU` after the resize."""
    import torch
    from torchvision.ops import box_iou

    anchors, (sx, sy) = anchor_fn(*size)
    if len(anchors) == 0:
        return np.zeros(len(boxes), bool)
    scaled = torch.as_tensor(boxes * np.array([sx, sy, sx, sy]), dtype=torch.float32)
    return (box_iou(scaled, torch.as_tensor(anchors, dtype=torch.float32)).amax(1) >= COVER_IOU).numpy()


def diagnose(records: Sequence[ImageRecord], classes: Sequence[str], drops_degenerate: bool = False,
             anchor_fn: AnchorFn | None = None, inclusive: bool = False) -> Report:
    """Examines every image header and box of a split.

    Args:
        records: the split's images (:func:`~visiontasks.data.doctor_read.read_records`).
        classes: class names; label ``i + 1`` is ``classes[i]``.
        drops_degenerate: the reader drops zero-area boxes (COCO), so they warn instead of FAIL.
        anchor_fn: the anchors of a two-stage config (:data:`AnchorFn`); None skips the coverage row.
        inclusive: VOC's inclusive pixel bounds (``x <= W - 1``) for "outside"; else ``x <= W``.

    Returns:
        The :class:`Report`.
    """
    first: dict[str, str] = {}
    counts: dict[str, int] = {k: 0 for k in ("missing", "unreadable", "annotation", "size", "degenerate", "outside",
                                             "wholly", "tiny", "duplicate", "empty", "uncovered", "objects")}

    def hit(key: str, n: int, where: str) -> None:
        counts[key] += n
        if n and key not in first:
            first[key] = where

    per_class = np.zeros(len(classes) + 1, np.int64)
    sizes = []
    for rec in records:
        if rec.problem:  # its image path may be a guess (or a label file): not looked at
            hit("annotation", 1, rec.problem)
            continue
        header, error = _header_size(rec)
        if error == "missing":
            hit("missing", 1, str(rec.path))
        elif error:
            hit("unreadable", 1, error)
        if header is not None:
            sizes.append(header)
            if rec.size is not None and tuple(rec.size) != header:
                hit("size", 1, f"{rec.path}: image is {header} (H, W), its annotation says {tuple(rec.size)}")
        size = rec.size or header
        boxes, labels = rec.boxes.reshape(-1, 4), rec.labels
        counts["objects"] += len(boxes)
        np.add.at(per_class, labels, 1)
        hit("empty", int(len(boxes) == 0), rec.image_id)
        if not len(boxes):
            continue
        w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        degenerate = (w <= 0) | (h <= 0)
        hit("degenerate", int(degenerate.sum()), f"{rec.image_id}: box {boxes[degenerate][:1].tolist()}")
        hit("tiny", int(((np.minimum(w, h) < TINY) & ~degenerate).sum()), rec.image_id)
        rows = np.concatenate([labels[:, None].astype(np.float64), boxes], 1)
        hit("duplicate", len(rows) - len(np.unique(rows, axis=0)), rec.image_id)
        if size is not None:
            hi = np.array([size[1], size[0]], np.float64) - (1 if inclusive else 0)
            wholly = (boxes[:, 0] > hi[0]) | (boxes[:, 1] > hi[1]) | (boxes[:, 2] < 0) | (boxes[:, 3] < 0)
            partly = ((boxes[:, :2] < 0).any(1) | (boxes[:, 2] > hi[0]) | (boxes[:, 3] > hi[1])) & ~wholly
            hit("wholly", int(wholly.sum()), rec.image_id)
            hit("outside", int(partly.sum()), rec.image_id)
            if anchor_fn is not None and (~degenerate).any():
                covered = _coverage(boxes[~degenerate], size, anchor_fn)
                hit("uncovered", int((~covered).sum()), rec.image_id)
    return _report(records, classes, counts, first, per_class, sizes, drops_degenerate, anchor_fn is not None)


def _report(records: Sequence[ImageRecord], classes: Sequence[str], counts: dict[str, int], first: dict[str, str],
            per_class: np.ndarray, sizes: list, drops_degenerate: bool, anchors: bool) -> Report:
    def row(name: str, key: str, bad: str) -> Finding:
        return Finding(name, counts[key], bad if counts[key] else "ok", first.get(key, ""))

    class_counts = {c: int(per_class[i + 1]) for i, c in enumerate(classes)}
    top = max(class_counts.values(), default=0)
    rare = [c for c, n in class_counts.items() if n == 0 or top / n > IMBALANCE]
    report = Report(per_class=class_counts)
    report.findings = [
        Finding("images", len(records), "ok" if records else "FAIL"),
        Finding("objects", counts["objects"], "ok" if counts["objects"] else "FAIL"),
        Finding("class imbalance (none, or < 1/10 of the largest)", len(rare), "warn" if rare else "ok",
                ", ".join(rare[:5]) + (" ..." if len(rare) > 5 else "")),
        row("missing image files", "missing", "FAIL"),
        row("unreadable image files", "unreadable", "FAIL"),
        row("annotation files the reader refuses", "annotation", "FAIL"),
        row("image size differs from its annotation", "size", "FAIL"),
        row("degenerate boxes (zero/negative area)", "degenerate", "warn" if drops_degenerate else "FAIL"),
        row("boxes wholly outside the image", "wholly", "FAIL"),
        row("boxes partly outside the image (clipped)", "outside", "warn"),
        row(f"tiny boxes (a side < {TINY:g} px)", "tiny", "warn"),
        row("exact duplicate boxes", "duplicate", "warn"),
        Finding("images without objects", counts["empty"], "info", first.get("empty", "")),
    ]
    if anchors:
        report.findings.append(row(f"boxes no anchor matches at IoU >= {COVER_IOU:g}", "uncovered", "warn"))
    if sizes:
        hs, ws = np.array([s[0] for s in sizes]), np.array([s[1] for s in sizes])
        report.findings.append(Finding("image size H x W (min / median / max)",
                                       f"{hs.min()}x{ws.min()} / {int(np.median(hs))}x{int(np.median(ws))} / "
                                       f"{hs.max()}x{ws.max()}", "info"))
    return report


def exit_code(report: Report) -> int:
    """1 when a finding FAILs (training would stop or break), else 0."""
    return int(any(f.severity == "FAIL" for f in report.findings))


def format_table(report: Report, title: str = "") -> str:
    """The report as a fixed-width text table (findings, then objects per class)."""
    width = max(len(f.name) for f in report.findings)
    cw = max(5, *(len(str(f.count)) for f in report.findings))
    lines = [title] if title else []
    lines.append(f"{'finding':<{width}}  {'count':>{cw}}  {'status':<6}  first example")
    lines.append("-" * (width + cw + 26))
    for f in report.findings:
        lines.append(f"{f.name:<{width}}  {str(f.count):>{cw}}  {f.severity:<6}  {f.example[:100]}".rstrip())
    lines.append("")
    top = max(report.per_class.values(), default=0)
    lines.append("objects per class:")
    for name, n in report.per_class.items():
        flag = "  <- imbalance" if n == 0 or top / n > IMBALANCE else ""
        lines.append(f"  {name:<20} {n:>8}{flag}")
    return "\n".join(lines)
