"""visiontasks.summary and tools/summary.py against hand-computed shapes, parameters and MACs."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch.nn as nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

import summary as summary_tool  # noqa: E402
from _common import run_cli  # noqa: E402

import visiontasks  # noqa: E402
from visiontasks.summary import PUBLISHED, parse_input_size, published_for, summary  # noqa: E402


def _side(n: int, f: int, p: int, s: int) -> int:
    """The notes' output size (n − f + 2p)/s + 1 (floored)."""
    return (n - f + 2 * p) // s + 1


def test_hand_computed_layers() -> None:
    net = nn.Sequential(
        nn.Conv2d(3, 128, 5, stride=2, padding=1),      # 33 → (33 − 5 + 2)/2 + 1 = 16
        nn.ReLU(),
        nn.Conv2d(128, 64, 3, padding=1, bias=False),   # the notes' 3×3×128 kernel, 64 outputs
        nn.MaxPool2d(2),                                # 16 → 8
        nn.Flatten(),
        nn.Linear(64 * 8 * 8, 10),
    )
    s = summary(net, (3, 33, 33))
    rows = {r.name: r for r in s.rows}
    side = _side(33, 5, 1, 2)
    assert side == 16
    assert rows["0"].output == f"[1, 128, {side}, {side}]"
    assert rows["0"].params == 5 * 5 * 3 * 128 + 128
    assert rows["0"].macs == 5 * 5 * 3 * 128 * side * side  # kw·kh·kc·oc·ow·oh·b, bias not counted
    assert rows["2"].params == 73_728
    assert rows["2"].macs == 3 * 3 * 128 * 64 * side * side
    assert rows["3"].output == "[1, 64, 8, 8]"
    assert rows["5"].output == "[1, 10]"
    assert rows["5"].macs == 4096 * 10
    assert s.total_macs == rows["0"].macs + rows["2"].macs + rows["5"].macs
    assert s.total_params == sum(r.params for r in s.rows)
    text = str(s)
    assert "73,728" in text and f"{s.total_macs:,}" in text


def test_depth_aggregates_children() -> None:
    net = nn.Sequential(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3)), nn.Conv2d(2, 1, 1))
    s = summary(net, (1, 9, 9), depth=1)
    assert [r.name for r in s.rows] == ["0", "1"]
    assert s.rows[0].macs == 3 * 3 * 1 * 2 * 7 * 7 + 3 * 3 * 2 * 2 * 5 * 5
    assert s.rows[0].output == "[1, 2, 5, 5]"


def test_detector_and_segmenter_run() -> None:
    det = visiontasks.get_model("faster_rcnn", num_classes=4, backbone="small")
    s = summary(det, (3, 64, 80))
    rows = {r.name: r for r in s.rows}
    assert rows["proposer.head.cls_logits"].output.startswith("[1, 18,")  # 9 anchors × 2... per location
    assert s.total_params == sum(p.numel() for p in det.parameters())
    assert s.total_macs >= sum(r.macs for r in s.rows) > 0
    fast = visiontasks.get_model("fast_rcnn", num_classes=4, backbone="small", min_size=64, max_size=96)
    s = summary(fast, (3, 64, 80), num_proposals=12)
    assert "12 fixed proposals" in s.note
    assert {r.name: r for r in s.rows}["roi_head.pooler"].output.startswith("[12, ")  # one RoI per proposal
    seg = visiontasks.get_model("fcn_small", num_classes=3)
    s = summary(seg, (3, 32, 48))
    assert s.rows[-1].output.endswith("]") and s.total_macs > 0


def test_published_figures_match_only_the_papers_construction() -> None:
    assert published_for("yolov1", {}) is PUBLISHED["yolov1"]
    assert published_for("yolov1", {"head": "conv"}) is None
    assert published_for("yolov1", {"num_classes": 4}) is None
    assert published_for("faster_rcnn", {}) is None
    assert published_for("deconvnet", {}).params == 252_000_000


@pytest.mark.slow
def test_yolov1_figure3_and_vgg16() -> None:
    import torchvision

    s = summary(visiontasks.get_model("yolov1"), (3, 448, 448), name="yolov1")
    assert s.total_params == 271_703_550
    assert round(2 * s.total_macs / 1e9, 1) == 40.6
    s = summary(torchvision.models.vgg16(), (3, 224, 224), name="torchvision:vgg16")
    assert s.total_params == PUBLISHED["torchvision:vgg16"].params == 138_357_544
    assert s.total_macs == 15_470_264_320  # torchvision's documented 15.47 "GFLOPS" are MACs


def test_tool_prints_table_and_rejects_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(summary_tool.main, ["fcn_small", "--input", "3x32x32", "--set", "num_classes=3"]) == 0
    out = capsys.readouterr().out
    assert "parameters:" in out and "MACs:" in out
    assert run_cli(summary_tool.main, ["fcn_small", "--input", "3x32"]) == 2
    assert "'3x32'" in capsys.readouterr().err
    assert run_cli(summary_tool.main, ["no_such_model"]) == 2
    assert run_cli(summary_tool.main, ["fcn_small", "--set", "widthh=3"]) == 2
    assert "widthh" in capsys.readouterr().err
    with pytest.raises(ValueError, match="0x2x2"):
        parse_input_size("0x2x2")
