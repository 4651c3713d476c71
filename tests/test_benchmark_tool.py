"""``visiontasks benchmark`` (tools/benchmark.py, visiontasks/benchmark.py): a tiny run's table and JSON.

No timing is asserted (the machine is shared): only the structure, the skipped cells and that the
mAP of a precision is the one the scoring path gives.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime", reason="the export extra is not installed (pip install -e '.[export]')")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

import benchmark as benchmark_tool  # noqa: E402
from _common import run_cli  # noqa: E402

from visiontasks.benchmark import Column, format_table, parse_columns  # noqa: E402


def test_columns_and_unsupported_cells() -> None:
    cols = parse_columns(["fp32", "int8"], ["pytorch", "onnxruntime"], [1, 2])
    assert len(cols) == 8 and cols[0] == Column("fp32", "pytorch", 1) and cols[0].name == "fp32/pytorch/1t"
    assert Column("int8", "pytorch", 1).unsupported() and Column("bf16", "onnxruntime", 1).unsupported()
    assert Column("int8", "onnxruntime", 2).unsupported() is None
    for bad in ((["fp16"], ["pytorch"], [1]), (["fp32"], ["tensorrt"], [1]), (["fp32"], ["pytorch"], [0])):
        with pytest.raises(ValueError):
            parse_columns(*bad)
    table = format_table({"rows": {"m": {"fp32/pytorch/1t": {"median_ms": 2.0, "min_ms": 1.0, "peak_rss_mib": None,
                                                            "map": 50.0}}},
                          "columns": [{"precision": "fp32", "runtime": "pytorch", "threads": 1,
                                       "name": "fp32/pytorch/1t"}]})
    assert table.splitlines()[2] == "| m | fp32 | pytorch | 1 | 2.0 | 1.0 | – | 50.00 |"


def test_tiny_run_table_and_json(tmp_path: Path, embedded_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "b.json"
    assert run_cli(benchmark_tool.main, ["default", "--precision", "fp32", "bf16", "int8", "--runtime", "pytorch",
                                         "--threads", "1", "--warmup", "1", "--iterations", "2", "--no-rss",
                                         "--map-root", str(embedded_root), "--map-images", "4",
                                         "--workdir", str(tmp_path / "w"), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    rows = [line for line in printed.splitlines() if line.startswith("| default |")]
    assert len(rows) == 3 and sum("not offered" in r for r in rows) == 1
    result = json.loads(out.read_text())
    cells = result["rows"]["default"]
    assert [c["name"] for c in result["columns"]] == ["fp32/pytorch/1t", "bf16/pytorch/1t", "int8/pytorch/1t"]
    assert "skipped" in cells["int8/pytorch/1t"]
    for name in ("fp32/pytorch/1t", "bf16/pytorch/1t"):
        cell = cells[name]
        assert 0 < cell["min_ms"] <= cell["median_ms"] and cell["peak_rss_mib"] is None
        assert 0.0 <= cell["map"] <= 100.0 + 1e-9
    assert result["iterations"] == 2 and result["map_split"] == "test" and result["baseline_rss_mib"] is None


@pytest.mark.slow
def test_onnxruntime_columns(tmp_path: Path, embedded_root: Path) -> None:
    from visiontasks.benchmark import benchmark

    calib = {"root": str(embedded_root), "split": "trainval", "images": 2}
    result = benchmark(["default"], parse_columns(["fp32", "int8"], ["pytorch", "onnxruntime"], [1]), warmup=1,
                       iterations=1, rss=False, map_root=str(embedded_root), map_images=4, workdir=tmp_path,
                       calib=calib, progress=False)
    cells = result["rows"]["default"]
    # the float graph reproduces PyTorch within 1e-4 in score: the same mAP on the same images
    assert cells["fp32/pytorch/1t"]["map"] == pytest.approx(cells["fp32/onnxruntime/1t"]["map"], abs=0.01)
    assert 0.0 <= cells["int8/onnxruntime/1t"]["map"] <= 100.0 + 1e-9


@pytest.mark.slow
def test_peak_rss_per_column(tmp_path: Path) -> None:
    from visiontasks.benchmark import benchmark

    result = benchmark(["default"], [Column("fp32", "pytorch", 1)], warmup=1, iterations=1, rss=True,
                       workdir=tmp_path, progress=False, map_images=1)
    cell = result["rows"]["default"]["fp32/pytorch/1t"]
    assert cell["peak_rss_mib"] >= result["baseline_rss_mib"] > 0


def test_random_weight_rows_run_at_the_visualize_preset() -> None:
    from visiontasks.benchmark import preset_for, resolve_source

    assert preset_for("default") == "evaluate" and preset_for("default-seg") == "evaluate"
    assert preset_for(resolve_source("yolov1_small")) == "visualize"  # a config: random weights
    assert preset_for("runs/detection/x") == "evaluate"  # a run directory has weights
