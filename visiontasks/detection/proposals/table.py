"""The selective-search table: every mode on a VOC-layout split, beside the paper's VOC 2007 figures.

Each row runs the proposer on every image of the split (or its first ``limit`` images), times
the proposer alone (``time.perf_counter`` around :func:`~visiontasks.detection.proposals.propose`,
image decoding excluded) and scores the boxes with :func:`~visiontasks.evaluation.proposal_recall`
(pixel-inclusive IoU, difficult objects left out, every box of every image). The default rows are
the three modes with no minimum box side (a detector's setting, not selective search's) and the
paper's mode with R-CNN's 20 px filter at the 500 px working scale, to show what the filter costs;
a derived row scores the paper's mode cut, image by image, to as many boxes as OpenCV's ``fast``
preset made for that image ("at no more boxes").

The paper's figures (Uijlings et al. 2013, VOC 2007 test, fast and quality modes; the project's
``../shared/notes/papers.md``): fast 2,134 boxes per image, recall 0.980 at IoU 0.5, MABO 0.804;
quality 10,097, 0.991, 0.879 (both with the released code's 20 px minimum box side). They are
another data set's (VOC objects are larger than COCO's) and sit beside the measured rows only to
read the gap; they are never compared in tests.

Shape shorthand: R = proposals of an image, G = ground-truth boxes of an image.
"""
from __future__ import annotations

import os
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from visiontasks.evaluation.proposals import proposal_recall

__all__ = ["CAPPED_ROWS", "PAPER_VOC07", "TABLE_ROWS", "cap_like", "format_proposal_table", "measure_proposals",
           "proposal_table"]

PAPER_VOC07: dict[str, dict[str, float]] = {
    "paper": {"boxes_per_image": 2134.0, "recall_50": 0.980, "mabo": 0.804},
    "quality": {"boxes_per_image": 10097.0, "recall_50": 0.991, "mabo": 0.879},
}
"""Uijlings et al. 2013 on VOC 2007 test (``papers.md``): the paper's fast mode (our ``paper``) and
its quality mode. Recall@0.7, AR and seconds per image are not in the paper's table."""

TABLE_ROWS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("paper", {"mode": "paper", "min_size": 0}),
    ("fast", {"mode": "fast", "min_size": 0}),
    ("quality", {"mode": "quality", "min_size": 0}),
    ("paper + 20 px filter", {"mode": "paper", "min_size": 20}),
)
"""(label, ``proposal_params`` keywords) of the default table; ``resize_width`` 500 (R-CNN's) for all."""

CAPPED_ROWS: tuple[tuple[str, str], ...] = (("paper", "fast"),)
"""(row, reference row): the row's proposals cut per image to the reference row's box count."""

_COLUMNS = (("boxes_per_image", "boxes/img", "{:9.0f}"), ("recall_50", "R@0.5", "{:6.3f}"),
            ("recall_70", "R@0.7", "{:6.3f}"), ("average_recall", "AR", "{:6.3f}"), ("mabo", "MABO", "{:6.3f}"),
            ("seconds_per_image", "s/img", "{:6.2f}"))


def cap_like(proposals: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Each image's proposals cut to as many as the reference proposals of that image.

    Args:
        proposals: per image, (R_i, 4) in rank order.
        reference: per image, (R'_i, 4) (only the counts are used).

    Returns:
        Per image, the first ``min(R_i, R'_i)`` rows of ``proposals[i]``.
    """
    if len(proposals) != len(reference):
        raise ValueError(f"proposals and reference must list the same images, got {len(proposals)} and "
                         f"{len(reference)}")
    return [p[:len(q)] for p, q in zip(proposals, reference)]


def measure_proposals(images: Sequence[Callable[[], np.ndarray]], gt_boxes: Sequence[np.ndarray],
                      gt_labels: Sequence[np.ndarray], gt_difficult: Sequence[np.ndarray] | None,
                      params: Mapping[str, Any]) -> dict[str, Any]:
    """Runs one proposer over images and scores it.

    Args:
        images: per image, a function returning its (H, W, 3) uint8 RGB array (called once,
            outside the timed part).
        gt_boxes, gt_labels, gt_difficult: per image, as :func:`proposal_recall`.
        params: canonical proposal parameters (``proposal_params(...)``).

    Returns:
        :func:`proposal_recall`'s dict plus ``"seconds_per_image"`` (mean proposer seconds),
        ``"params"`` and ``"proposals"`` (per image, (R, 4) float32).
    """
    from visiontasks.detection.proposals import propose

    proposals, seconds = [], []
    for load in images:
        rgb = load()
        start = time.perf_counter()
        proposals.append(propose(rgb, dict(params)))
        seconds.append(time.perf_counter() - start)
    result = proposal_recall(proposals, gt_boxes, gt_labels, gt_difficult)
    result.update(seconds_per_image=float(np.mean(seconds)) if seconds else float("nan"), params=dict(params),
                  proposals=proposals)
    return result


def proposal_table(root: str | os.PathLike[str], split: str = "test", limit: int | None = None,
                   rows: Sequence[tuple[str, Mapping[str, Any]]] = TABLE_ROWS, resize_width: int | None = 500,
                   capped: Sequence[tuple[str, str]] = CAPPED_ROWS,
                   progress: Callable[[str], None] | None = None,
                   classes: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Measures every row of the table on a VOC-layout split.

    Args:
        root: VOC-layout folder (``ImageSets/Main/<split>.txt``, ``JPEGImages``, ``Annotations``).
        split: the image list.
        limit: use the first ``limit`` images of the list (None: all).
        rows: (label, ``proposal_params`` keywords) per row; ``resize_width`` is added unless given.
        resize_width: the working width of every row (R-CNN: 500).
        capped: (row, reference row) label pairs; each adds the row ``"<row>, first N as
            <reference>"``: the row's boxes cut per image to the reference's count (its seconds
            are the row's). Pairs naming a row not in ``rows`` are skipped.
        progress: called with one line after each row (e.g. ``print``).
        classes: the annotation's class names (None: VOC's 20).

    Returns:
        Per row, :func:`measure_proposals`' dict plus ``"label"``.

    Raises:
        InputError: an unknown mode in ``rows`` (from ``proposal_params``) or unreadable data.
    """
    from visiontasks.data import VOCDetection, read_image
    from visiontasks.detection.proposals import proposal_params

    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive int or None, got {limit!r}")
    params = [(label, proposal_params(**{"resize_width": resize_width, **kw})) for label, kw in rows]
    dataset = VOCDetection(root, split, classes)
    n = len(dataset) if limit is None else min(limit, len(dataset))
    targets = [dataset.get_annotation(i) for i in range(n)]
    gts = ([t["boxes"].numpy() for t in targets], [t["labels"].numpy() for t in targets],
           [t["difficult"].numpy() for t in targets])

    def loader(i: int) -> Callable[[], np.ndarray]:
        return lambda: read_image(dataset.image_path(i)).permute(1, 2, 0).contiguous().numpy()

    out = []
    for label, p in params:
        res = measure_proposals([loader(i) for i in range(n)], *gts, p)
        res.update(label=label)
        out.append(res)
        if progress is not None:
            progress(f"{label}: {res['boxes_per_image']:.0f} boxes/img, recall@0.5 {res['recall_50']:.3f}, "
                     f"{res['seconds_per_image']:.2f} s/img")
    by_label = {r["label"]: r for r in out}
    for row, ref in capped:
        if row in by_label and ref in by_label:
            cut = cap_like(by_label[row]["proposals"], by_label[ref]["proposals"])
            res = proposal_recall(cut, *gts)
            res.update(label=f"{row}, first N as {ref}", seconds_per_image=by_label[row]["seconds_per_image"],
                       params=by_label[row]["params"], proposals=cut)
            out.append(res)
    return out


def format_proposal_table(results: Sequence[Mapping[str, Any]], title: str | None = None) -> str:
    """The measured rows and the paper's VOC 2007 rows as a fixed-width text table.

    Args:
        results: :func:`proposal_table`'s rows.
        title: a first line (e.g. the data and the machine).

    Returns:
        The table, one line per row, then the paper's rows ("-" where the paper gives no figure).
    """
    label_w = max([len(r["label"]) for r in results] + [28])
    head = f"{'':{label_w}s} " + " ".join(f"{name:>{len(fmt.format(0.0))}s}" for _, name, fmt in _COLUMNS)
    lines = [title] if title else []
    lines += [head, "-" * len(head)]
    for r in results:
        lines.append(f"{r['label']:{label_w}s} " + " ".join(fmt.format(r[key]) for key, _, fmt in _COLUMNS))
    for mode, figures in PAPER_VOC07.items():
        name = f"Uijlings 2013 VOC07 {'fast' if mode == 'paper' else mode}"
        cells = [fmt.format(figures[key]) if key in figures else f"{'-':>{len(fmt.format(0.0))}s}"
                 for key, _, fmt in _COLUMNS]
        lines.append(f"{name:{label_w}s} " + " ".join(cells))
    return "\n".join(lines)
