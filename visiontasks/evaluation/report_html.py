"""An evaluation report as one self-contained HTML page: ``DIR/index.html``, nothing fetched from the network.

Every picture is embedded as a ``data:`` URI, except the PR curves, written beside the page
(``DIR/pr_curves.png``) by :func:`~visiontasks.evaluation.plots.plot_pr_curves`. A marker file
(``DIR/.visiontasks-report``) says the folder holds a report: only such a folder, an empty one or a
new one is written to (:func:`check_report_dir`), so a report never overwrites other files.

Detection: headline metrics, the per-class table (with AP by size when present), PR curves (VOC
metrics), TIDE's errors as bars, the confusion matrix heatmap and a gallery of the top-scoring
false positives of each error type and of the missed objects (:mod:`.report_gallery`).
Segmentation: headline metrics, the per-class table, the row-normalised confusion heatmap and the
worst images by IoU, image | ground truth | prediction.
"""
from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from visiontasks.errors import InputError
from visiontasks.evaluation.report_draw import confusion_heatmap, data_uri, error_bars
from visiontasks.io import atomic_write

__all__ = ["MARKER", "check_report_dir", "write_html", "det_sections", "seg_sections", "table"]

MARKER = ".visiontasks-report"
_STYLE = """body{font-family:sans-serif;margin:1.5em;max-width:1200px}table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}th{background:#eee}td:first-child{text-align:left}
.gallery{display:flex;flex-wrap:wrap;gap:8px}.gallery figure{margin:0;font-size:12px;max-width:260px}
figcaption{word-break:break-all}.note{color:#a50}"""


def check_report_dir(path: str | os.PathLike[str]) -> Path:
    """Refuses a report folder that would overwrite other files (call it before the evaluation runs).

    Args:
        path: the ``--report`` folder.

    Returns:
        The folder (created later by :func:`write_html`).

    Raises:
        InputError: ``path`` is a file, or a non-empty folder without the report marker.
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise InputError(folder, "is a file; --report takes a folder (new, empty or an earlier report)")
    if folder.is_dir() and any(folder.iterdir()) and not (folder / MARKER).is_file():
        raise InputError(folder, f"is a non-empty folder that is not an earlier report (no {MARKER}); "
                                 "pick a new or empty folder")
    return folder


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{100 * value:.2f}"
    return html.escape(str(value))


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """An HTML table; floats shown in percent (2 decimals), NaN/None as n/a."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _img(src: str, alt: str) -> str:
    return f'<img src="{src}" alt="{html.escape(alt)}">'


def _headline(result: Mapping[str, Any], keys: Sequence[str]) -> str:
    rows = [(k, result[k]) for k in keys if isinstance(result.get(k), (int, float)) and not isinstance(result[k], bool)]
    rows += [(k, str(result[k])) for k in ("metric", "reference", "iou_type") if result.get(k) is not None]
    if isinstance(result.get("iou"), float):
        rows.append(("iou (a true positive needs)", f"{result['iou']:g}"))
    return '<section id="metrics"><h2>Headline metrics</h2>' + table(["metric", "value (% where a fraction)"],
                                                                      rows) + "</section>"


def det_sections(result: Mapping[str, Any], out: Path, gallery: str) -> list[str]:
    """The detection report's sections (HTML strings), writing ``out/pr_curves.png`` when there are curves.

    Args:
        result: the evaluation result (``mAP``, ``per_class``, optionally ``curves``, ``errors``,
            ``confusion``, ``by_size``, COCO's stats).
        out: the report folder.
        gallery: the gallery section's HTML (:func:`~visiontasks.evaluation.report_gallery.gallery_html`).
    """
    parts = [_headline(result, ["mAP", "AP", "AP50", "AP75", "APs", "APm", "APl", "AR100"])]
    sizes = result.get("by_size") or {}
    header = ["class", "AP"] + [f"AP {s}" for s in sizes]
    rows = [[name, ap] + [sizes[s]["per_class"].get(name) for s in sizes] for name, ap in result["per_class"].items()]
    if sizes:
        rows.append(["mean"] + [result["mAP"]] + [sizes[s]["mAP"] for s in sizes])
    parts.append('<section id="per-class"><h2>Per class</h2>' + table(header, rows) + "</section>")
    curves = result.get("curves")
    if curves is not None and "precision" in curves:
        from visiontasks.evaluation.plots import plot_pr_curves

        plot_pr_curves(curves, list(result["per_class"]), out / "pr_curves.png")
        parts.append('<section id="pr-curves"><h2>Precision-recall curves</h2>' + _img("pr_curves.png", "PR curves")
                     + "</section>")
    else:
        parts.append('<section id="pr-curves"><h2>Precision-recall curves</h2><p class="note">Drawn for the VOC '
                     "metrics only (COCO's curves are per IoU threshold and area).</p></section>")
    errors = result.get("errors")
    if errors:
        main, special = errors["main"], errors["special"]
        parts.append('<section id="errors"><h2>Error breakdown (TIDE, Bolya et al. 2020)</h2>'
                     f"<p>AP50 (TIDE's 101-point AP, 100 detections per image): {100 * errors['ap50']:.2f}. Each "
                     "bar: the AP points gained by fixing that error type alone.</p>"
                     + _img(data_uri(error_bars(main, special)), "error bars")
                     + table(["type", *main, *special], [["dAP", *main.values(), *special.values()]]) + "</section>")
    else:
        parts.append('<section id="errors"><h2>Error breakdown</h2><p class="note">Not computed (box '
                     "detections only).</p></section>")
    confusion = result.get("confusion")
    if confusion:
        matrix = np.asarray(confusion["matrix"])
        title = f"IoU {confusion['iou']:g}, score >= {confusion['score']:g}; last row/column: background"
        parts.append('<section id="confusion"><h2>Confusion matrix</h2>'
                     + _img(data_uri(confusion_heatmap(matrix, confusion["classes"], title)), "confusion matrix")
                     + "</section>")
    parts.append(gallery)
    return parts


def seg_sections(result: Mapping[str, Any], confusion: np.ndarray | None, names: Sequence[str],
                 worst: str) -> list[str]:
    """The segmentation report's sections: metrics, per-class IoU and accuracy, normalised heatmap, worst images."""
    parts = [_headline(result, ["mIoU", "pixel_accuracy", "mean_class_accuracy"])]
    accuracy = result.get("per_class_accuracy", {})
    rows = [[n, iou, accuracy.get(n)] for n, iou in result["per_class"].items()]
    parts.append('<section id="per-class"><h2>Per class</h2>' + table(["class", "IoU", "accuracy"], rows)
                 + "</section>")
    if confusion is not None:
        heat = confusion_heatmap(confusion, names, "pixels, each row normalised by its class's pixels", normalise=True)
        parts.append('<section id="confusion"><h2>Confusion matrix (normalised)</h2>'
                     + _img(data_uri(heat), "confusion matrix") + "</section>")
    parts.append(worst)
    return parts


def write_html(out: str | os.PathLike[str], title: str, sections: Sequence[str], command: str = "") -> Path:
    """Writes ``out/index.html`` (atomically) and the marker file.

    Args:
        out: the report folder (created; checked by :func:`check_report_dir` beforehand).
        title: the page title.
        sections: the page's sections, in order.
        command: the command that made it (shown under the title).

    Returns:
        The path of ``index.html``.
    """
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).write_text(json.dumps({"written_by": "visiontasks tools/eval.py --report"}) + "\n")
    head = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>")
    if command:
        head += f"<p><code>{html.escape(command)}</code></p>"
    with atomic_write(folder / "index.html", mode="w", encoding="utf-8") as f:
        f.write(head + "\n".join(sections) + "</body></html>\n")
    return folder / "index.html"
