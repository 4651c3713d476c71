"""``python _preempt_tool.py TOOL ARGS...``: runs ``tools/TOOL.py`` as a real process for the preemption tests,
with R-CNN's fitting stages slowed down (``VISIONTASKS_TEST_FIT_SLEEP`` seconds per cached image read or
written) so that a signal can land inside them. Nothing else changes: the same ``run_cli(main)``.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))


def _slowed(fn, seconds: float):
    def wrapper(*args, **kwargs):
        time.sleep(seconds)
        return fn(*args, **kwargs)

    return wrapper


if __name__ == "__main__":
    seconds = float(os.environ.get("VISIONTASKS_TEST_FIT_SLEEP", "0"))
    if seconds:
        import importlib

        import visiontasks.detection  # noqa: F401 (the package first: rcnn's modules import each other)

        stages = importlib.import_module("visiontasks.detection.rcnn.stages")
        stages.read_image_features = _slowed(stages.read_image_features, seconds)
        cache = importlib.import_module("visiontasks.detection.rcnn.feature_cache")
        cache.write_image_features = _slowed(cache.write_image_features, seconds)
    tool = __import__(sys.argv[1])
    from _common import run_cli

    sys.exit(run_cli(tool.main, sys.argv[2:]))
