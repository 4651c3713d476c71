"""Command-line mistakes are one ``error:`` line and exit 2 through every tool (no usage block)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

import compress  # noqa: E402
import eval as eval_tool  # noqa: E402
import export  # noqa: E402
import predict  # noqa: E402
import propose  # noqa: E402
import summary  # noqa: E402
import train_det  # noqa: E402
import train_seg  # noqa: E402
from _common import run_cli  # noqa: E402

CASES = [
    (train_det.main, ["--no-such-option"], "unrecognized arguments: --no-such-option"),
    (train_seg.main, ["--config"], "argument --config: expected one argument"),
    (eval_tool.main, ["det", "--metric", "voc99"], "invalid choice: 'voc99'"),
    (eval_tool.main, ["nope"], "invalid choice: 'nope'"),
    (eval_tool.main, [], "required"),
    (predict.main, [], "required"),
    (propose.main, ["--mode", "slowest"], "invalid choice: 'slowest'"),
    (compress.main, [], "required"),
    (export.main, ["--format", "tflite"], "invalid choice: 'tflite'"),
    (summary.main, [], "required"),
]


@pytest.mark.parametrize("main, argv, says", CASES, ids=[f"{m.__module__}:{' '.join(a) or '(none)'}"
                                                         for m, a, _ in CASES])
def test_usage_mistake_is_one_line_exit_2(main, argv, says, capsys):
    rc = run_cli(main, argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], err
    assert "usage:" not in err and "Traceback" not in err and "(see --help)" in lines[0]


def test_help_still_prints_and_exits_0_and_parsers_are_restored(capsys):
    with pytest.raises(SystemExit) as exc:
        run_cli(eval_tool.main, ["det", "--help"])
    assert exc.value.code == 0 and "usage:" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # outside run_cli argparse behaves as usual
        argparse.ArgumentParser(prog="x").parse_args(["--bad"])
