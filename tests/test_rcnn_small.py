"""The default R-CNN config trains end to end through tools/train_det.py and reaches VOC07 mAP >= 0.5
on the embedded test split (about 10-15 minutes on 2 CPU cores: slow)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

import train_det  # noqa: E402
from _common import run_cli  # noqa: E402


@pytest.mark.slow
def test_rcnn_small_reaches_half_map_on_the_embedded_test_split(tmp_path):
    out = tmp_path / "run"
    rc = run_cli(train_det.main, ["--config", str(REPO / "configs/detection/rcnn_small.yaml"), "--out", str(out),
                                  "--device", "cpu"])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["mAP"] >= 0.5, metrics
    stages = json.loads((out / "stages.json").read_text())
    assert [s["status"] for s in stages.values()] == ["done"] * 4
