"""Precision-recall curves of a VOC detection evaluation, drawn to a PNG (matplotlib, Agg, no pyplot state)."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from visiontasks.io import atomic_write

__all__ = ["plot_pr_curves"]


def plot_pr_curves(result: Mapping[str, Any], class_names: Sequence[str], path: str | os.PathLike[str]) -> Path:
    """Draws one precision-recall curve per class, with its AP in the legend, and writes a PNG atomically.

    Args:
        result: the dict of :func:`eval_detection_voc` (``precision``, ``recall``, ``ap``, ``map``).
        class_names: the C class names, in label order.
        path: where the PNG goes (parent folders are created).

    Returns:
        The path written. Classes without ground truth (no curve) are listed as "n/a".
    """
    precision, recall, ap = result["precision"], result["recall"], result["ap"]
    if not len(precision) == len(recall) == len(ap) == len(class_names):
        raise ValueError(f"{len(class_names)} class names for {len(ap)} classes in the result")
    fig = Figure(figsize=(8, 6), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.add_subplot(1, 1, 1)
    colors = [f"C{i % 10}" for i in range(len(class_names))]
    styles = ["-", "--", ":", "-."]
    for c, name in enumerate(class_names):
        if precision[c] is None or math.isnan(float(ap[c])):
            axes.plot([], [], color=colors[c], label=f"{name} (n/a)")
            continue
        axes.plot(recall[c], precision[c], color=colors[c], linestyle=styles[(c // 10) % 4],
                  label=f"{name} ({float(ap[c]):.3f})")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.02)
    axes.set_xlabel("recall")
    axes.set_ylabel("precision")
    title = f"mAP {float(result['map']):.3f}" if "map" in result else "precision-recall"
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small", title="class (AP)")
    fig.tight_layout()
    with atomic_write(path) as f:
        fig.savefig(f, format="png")
    return Path(path)
