"""log.csv rows (window means, truncation on resume), eval log, loss plot."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from visiontasks.engine.logger import TrainLogger, plot_loss_curve, scalar_metrics
from visiontasks.errors import InputError


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_rows_average_the_window_and_resume_drops_later_rows(tmp_path: Path) -> None:
    log = TrainLogger(tmp_path, max_iters=7, log_every=3)
    for it in range(1, 6):
        log.log_iteration(it, lr=0.1 * it, losses={"a": float(it), "b": 1.0})
    log.log_metrics(3, {"mAP": 0.5, "per_class": {"cat": 0.25}, "curves": {"x": [1]}})
    log.close()
    rows = _read(tmp_path / "log.csv")
    assert [r["iteration"] for r in rows] == ["3"]
    # mean of a over 1,2,3 = 2; total = a + b per iteration, mean 3; lr of iteration 3 itself
    assert (float(rows[0]["a"]), float(rows[0]["total_loss"]), float(rows[0]["lr"])) == (2.0, 3.0, pytest.approx(0.3))

    # A resumed run from iteration 2 (say the checkpoint was there): the row of iteration 3 goes.
    log = TrainLogger(tmp_path, max_iters=7, start_iter=2, log_every=3)
    log.load_state_dict({"sums": {"a": 3.0, "b": 2.0, "total_loss": 5.0},
                         "counts": {"a": 2, "b": 2, "total_loss": 2}, "count": 2})
    assert _read(tmp_path / "log.csv") == []
    assert (tmp_path / "eval_log.jsonl").read_text() == ""
    for it in range(3, 8):
        log.log_iteration(it, lr=0.01, losses={"a": float(it), "b": 1.0, "c": 2.0})
    log.close()
    rows = _read(tmp_path / "log.csv")
    assert [r["iteration"] for r in rows] == ["3", "6", "7"]
    assert float(rows[0]["a"]) == 2.0 and rows[0]["c"] == "2.0"  # new loss "c" widened the header
    assert float(rows[1]["a"]) == 5.0 and float(rows[2]["a"]) == 7.0


def test_eval_metrics_are_logged(tmp_path: Path) -> None:
    log = TrainLogger(tmp_path, max_iters=4, log_every=2)
    log.log_metrics(4, {"mIoU": 0.5, "per_class": {"cat": float("nan"), "dog": 1.0}, "curves": [1.0]})
    log.close()
    entry = json.loads((tmp_path / "eval_log.jsonl").read_text())
    assert entry == {"iteration": 4, "mIoU": 0.5, "per_class/cat": None, "per_class/dog": 1.0}


def test_scalar_metrics_flattens_one_level() -> None:
    import numpy as np

    got = scalar_metrics({"mAP": np.float64(0.5), "ok": True, "per_class": {"a": 1}, "n": 3, "s": "x"})
    assert got == {"mAP": 0.5, "per_class/a": 1.0, "n": 3.0}


def test_plot_loss_curve(tmp_path: Path) -> None:
    log = TrainLogger(tmp_path, max_iters=4, log_every=1)
    for it in range(1, 5):
        log.log_iteration(it, 0.1, {"loss": 1.0 / it})
    log.close()
    png = plot_loss_curve(tmp_path / "log.csv", tmp_path / "loss.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(InputError, match="not found"):
        plot_loss_curve(tmp_path / "missing.csv", tmp_path / "x.png")
    (tmp_path / "empty.csv").write_text("iteration,lr,loss\n")
    with pytest.raises(InputError, match="no rows"):
        plot_loss_curve(tmp_path / "empty.csv", tmp_path / "x.png")


def test_disabled_logger_writes_nothing(tmp_path: Path) -> None:
    log = TrainLogger(tmp_path / "r1", max_iters=2, log_every=1, enabled=False)
    log.log_iteration(1, 0.1, {"loss": 1.0})
    log.log_metrics(1, {"mAP": 0.1})
    log.close()
    assert not (tmp_path / "r1").exists()
