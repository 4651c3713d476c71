"""A report's pictures of single images: the detection error gallery and the worst segmentations.

Detection: the top-scoring false positives of each TIDE error type (cls, loc, both, dupe, bkg;
detections inside ignore regions left out) and the largest missed objects, each drawn on a crop of
its image (:func:`~visiontasks.evaluation.report_draw.draw_crop`). Which detection got which error
is :func:`~visiontasks.evaluation.tide.tide_errors`' ``per_detection`` output, so the gallery
agrees with the breakdown's figures. Segmentation: the images of lowest IoU (mean over the classes
present in the ground truth or the prediction, void pixels left out), image | ground truth | prediction.

Shape shorthand: N = images; D_i, G_i = detections and boxes of image i; H, W = a mask's size.
"""
from __future__ import annotations

import heapq
import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from visiontasks.evaluation.report_draw import data_uri, draw_crop, side_by_side

__all__ = ["DetectionInputs", "gallery_html", "WorstSegmentations", "GALLERY_TYPES", "PER_TYPE"]

GALLERY_TYPES = ("cls", "loc", "both", "dupe", "bkg", "miss")
PER_TYPE = 8


@dataclass
class DetectionInputs:
    """The boxes a detection report draws: per-image arrays as the evaluators take them.

    Attributes:
        preds: ``(boxes, labels, scores)``, lists of N arrays ((D_i, 4), (D_i,) 1..C, (D_i,)).
        gts: ``(boxes, labels, ignore)``, lists of N arrays (ignore: difficult or crowd).
        classes: the C class names.
        ids: the N image ids (shown in captions).
        box_format: ``"voc"`` (xyxy 0-based inclusive) or ``"xywh"`` (COCO).
        image_path: image index -> its file, or None when it is not found; None: no images at all.
    """

    preds: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]
    gts: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]
    classes: Sequence[str]
    ids: Sequence[str]
    box_format: str = "voc"
    image_path: Callable[[int], Path | None] | None = None


def _xyxy(box: np.ndarray, box_format: str) -> list[float]:
    x0, y0, a, b = (float(v) for v in box)
    return [x0, y0, x0 + a, y0 + b] if box_format == "xywh" else [x0, y0, a, b]


def _iou(box: list[float], others: np.ndarray) -> np.ndarray:
    if not len(others):
        return np.zeros(0)
    lt, rb = np.maximum(box[:2], others[:, :2]), np.minimum(box[2:], others[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = lambda b: np.prod(np.clip(b[..., 2:] - b[..., :2], 0, None), axis=-1)  # noqa: E731
    return inter / np.maximum(area(np.asarray(box)) + area(others) - inter, 1e-9)


def _picks(inputs: DetectionInputs, tide: dict[str, Any], kind: str) -> list[tuple[int, int | None, list[int]]]:
    """(image, detection row or None, ground-truth rows to draw) of the top ``PER_TYPE`` of one type."""
    if kind == "miss":
        miss = tide["missed"]
        boxes = [np.asarray(_xyxy(inputs.gts[0][i][j], inputs.box_format))
                 for i, j in zip(miss["image"], miss["index"])]
        area = [float(np.prod(np.clip(b[2:] - b[:2], 0, None))) for b in boxes]
        return [(int(miss["image"][k]), None, [int(miss["index"][k])]) for k in np.argsort(area, kind="stable")[::-1]]
    det = tide["detections"]
    rows = np.flatnonzero((det["error"] == kind) & ~det["ignored"])
    scores = np.array([inputs.preds[2][det["image"][r]][det["index"][r]] for r in rows], np.float64)
    out = []
    for r in rows[np.argsort(-scores, kind="stable")]:
        i, d = int(det["image"][r]), int(det["index"][r])
        if det["gt"][r] >= 0:
            near = [int(det["gt"][r])]
        else:  # the boxes it overlaps, to show why it is wrong (dupe: the box already found; both: a near one)
            gts = np.array([_xyxy(b, inputs.box_format) for b in inputs.gts[0][i]]).reshape(-1, 4)
            overlap = _iou(_xyxy(inputs.preds[0][i][d], inputs.box_format), gts)
            near = [int(g) for g in np.argsort(-overlap)[:2] if overlap[g] > 0.1]
        out.append((i, d, near))
    return out


def gallery_html(inputs: DetectionInputs, tide: dict[str, Any] | None, why_none: str = "") -> str:
    """The gallery section: for each error type the top ``PER_TYPE`` pictures, or a note saying why there are none.

    Args:
        inputs: the boxes and the images.
        tide: :func:`~visiontasks.evaluation.tide.tide_errors` run with ``per_detection=True``, or None.
        why_none: the note shown instead of pictures when ``inputs.image_path`` is None.
    """
    from PIL import Image

    head = '<section id="gallery"><h2>Gallery: top-scoring false positives by error type, missed objects</h2>'
    if inputs.image_path is None or tide is None:
        return head + f'<p class="note">No gallery: {html.escape(why_none)}</p></section>'
    parts = [head, "<p>Detections in their class colour with their score; ground truth in white. "
                   "Missed objects: the largest first.</p>"]
    for kind in GALLERY_TYPES:
        figures, absent = [], 0
        for i, d, near in _picks(inputs, tide, kind):
            if len(figures) == PER_TYPE:
                break
            path = inputs.image_path(i)
            if path is None:
                absent += 1
                continue
            with Image.open(path) as image:
                image = image.convert("RGB")
            gts = [_xyxy(inputs.gts[0][i][g], inputs.box_format) for g in near]
            gt_labels = [int(inputs.gts[1][i][g]) for g in near]
            if d is None:
                jpeg = draw_crop(image, None, 0, 0.0, gts, gt_labels, inputs.classes)
                caption = f"{inputs.ids[i]}: missed {inputs.classes[gt_labels[0] - 1]}"
            else:
                label, score = int(inputs.preds[1][i][d]), float(inputs.preds[2][i][d])
                jpeg = draw_crop(image, _xyxy(inputs.preds[0][i][d], inputs.box_format), label, score, gts,
                                 gt_labels, inputs.classes)
                caption = f"{inputs.ids[i]}: {inputs.classes[label - 1]} {score:.2f}"
                if kind == "cls" and gt_labels:
                    caption += f" (is {inputs.classes[gt_labels[0] - 1]})"
            figures.append(f'<figure><img src="{data_uri(jpeg, "image/jpeg")}" alt="{kind}">'
                           f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        note = f" ({absent} skipped: image not found)" if absent else ""
        body = "".join(figures) if figures else "<p>none</p>"
        parts.append(f'<h3 id="gallery-{kind}">{kind}{note}</h3><div class="gallery">{body}</div>')
    return "".join(parts) + "</section>"


class WorstSegmentations:
    """Keeps the ``keep`` images of lowest IoU and the dataset's confusion matrix, image by image.

    Call it as an ``on_prediction(pred, target)`` hook (``target["mask"]``, ``target["image_id"]``)
    or with :meth:`add`. ``foreground_background``: the ground truth is scored as 0 / 1 (every
    class is 1, void stays 255), as the classic methods without oracle labels are.
    """

    def __init__(self, keep: int = 8, foreground_background: bool = False) -> None:
        self.keep = keep
        self.foreground_background = foreground_background
        self._confusion = np.zeros((255, 255), np.int64)  # labels 0..254 (255: void); cut to K by matrix()
        self._heap: list[tuple[float, int, str, np.ndarray, np.ndarray]] = []
        self._seen = 0

    def __call__(self, pred: Any, target: dict) -> None:
        self.add(str(target["image_id"]), np.asarray(pred), np.asarray(target["mask"]))

    def add(self, image_id: str, pred: np.ndarray, gt: np.ndarray) -> None:
        """Adds one image: (H, W) predicted and ground-truth label maps (255 in ``gt``: void)."""
        if self.foreground_background:
            gt = np.where(gt == 255, 255, gt > 0).astype(np.uint8)
        k = 255
        valid = (gt < k) & (pred < k)
        cm = np.bincount(k * gt[valid].astype(np.int64) + pred[valid].astype(np.int64),
                         minlength=k * k).reshape(k, k)
        self._confusion += cm
        union = cm.sum(0) + cm.sum(1) - np.diag(cm)
        iou = float(np.mean(np.diag(cm)[union > 0] / union[union > 0])) if (union > 0).any() else 1.0
        item = (-iou, self._seen, image_id, pred.astype(np.uint8), gt.astype(np.uint8))
        self._seen += 1
        if len(self._heap) < self.keep:
            heapq.heappush(self._heap, item)
        elif item > self._heap[0]:
            heapq.heapreplace(self._heap, item)

    def matrix(self, k: int) -> np.ndarray:
        """(K, K) pixel confusion matrix of every image added (rows true, columns predicted)."""
        return self._confusion[:k, :k].copy()

    def html(self, image_path: Callable[[str], Path | None], names: Sequence[str]) -> str:
        """The worst-images section, lowest IoU first (the image panel grey where no image is found)."""
        from PIL import Image

        parts = ['<section id="worst"><h2>Worst images by IoU: image | ground truth | prediction</h2>'
                 '<div class="gallery">']
        for neg, _, image_id, pred, gt in sorted(self._heap, reverse=True):
            path = image_path(image_id)
            image = None
            if path is not None:
                with Image.open(path) as im:
                    image = np.asarray(im.convert("RGB"))
                image = image if image.shape[:2] == gt.shape else None
            jpeg = side_by_side(image, gt, pred, names)
            parts.append(f'<figure style="max-width:780px"><img src="{data_uri(jpeg, "image/jpeg")}" alt="worst">'
                         f"<figcaption>{html.escape(image_id)}: IoU {100 * -neg:.1f}</figcaption></figure>")
        return "".join(parts) + "</div></section>"
