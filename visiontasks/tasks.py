"""The tasks the toolkit trains and evaluates, and the metrics of each: defined here once.

The registry tags models with a task (plus "backbone" for the shared bodies), configs name a
task, and the data factory builds the datasets of a task, all from :data:`TASKS`.
``eval.metric`` in a config must be one of :data:`METRICS` of its task (null: the first).
"""
from __future__ import annotations

__all__ = ["TASKS", "METRICS", "VOC_CLASSES", "default_metric", "check_metric"]

#: Tasks a config can name (``task:``).
TASKS: tuple[str, ...] = ("detection", "segmentation")

#: The default label set (PASCAL VOC's 20 object classes, background excluded); torch-free, so the
#: results-file evaluators share it with the datasets.
VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)

#: Metrics of each task: VOC07 11-point / VOC10+ all-point / COCO mAP; confusion-matrix mIoU.
METRICS: dict[str, tuple[str, ...]] = {
    "detection": ("voc07", "voc12", "coco"),
    "segmentation": ("miou",),
}


def default_metric(task: str) -> str:
    """The metric used when ``eval.metric`` is null."""
    return METRICS[task][0]


def check_metric(task: str, metric: str | None) -> str:
    """Returns the metric to use for ``task``; raises ``ValueError`` quoting a wrong one."""
    if task not in METRICS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if metric is None:
        return default_metric(task)
    if metric not in METRICS[task]:
        raise ValueError(f"eval.metric must be one of {METRICS[task]} for task {task!r}, got {metric!r}")
    return metric
