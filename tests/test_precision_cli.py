"""``--precision`` on tools/predict.py and tools/eval.py (bf16 needs a CPU with native bf16)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from visiontasks.api import DEFAULT_WEIGHTS
from visiontasks.precision import cpu_bf16_supported

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
import eval as eval_tool  # noqa: E402
import predict  # noqa: E402
from _common import run_cli  # noqa: E402

pytestmark = pytest.mark.skipif(not cpu_bf16_supported(), reason="this CPU has no native bf16 (AVX-512 BF16/AMX)")


def test_predict_in_bf16_writes_the_drawing(embedded_root: Path, tmp_path: Path, capsys) -> None:
    image = sorted((embedded_root / "JPEGImages").glob("*.jpg"))[0]
    assert run_cli(predict.main, [str(image), "--out", str(tmp_path / "out"), "--precision", "bf16"]) == 0
    assert (tmp_path / "out" / f"{image.stem}_pred.png").is_file()
    assert "detections ->" in capsys.readouterr().out


def test_eval_checkpoint_in_bf16_scores_like_fp32(embedded_root: Path, tmp_path: Path) -> None:
    ids = (embedded_root / "ImageSets" / "Main" / "test.txt").read_text().split()[:8]
    (embedded_root / "ImageSets" / "Main" / "bf16_probe.txt").write_text("\n".join(ids) + "\n")
    maps = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / f"{precision}.json"
        argv = ["det", "--checkpoint", str(DEFAULT_WEIGHTS), "--root", str(embedded_root), "--split", "bf16_probe",
                "--out", str(out), "--precision", precision]
        assert run_cli(eval_tool.main, argv) == 0
        maps[precision] = json.loads(out.read_text())["mAP"]
    assert abs(maps["bf16"] - maps["fp32"]) <= 0.05, maps


def test_bad_precision_is_refused(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        predict.main(["x.jpg", "--out", str(tmp_path), "--precision", "fp16"])
    assert exc.value.code == 2 and "'fp16'" in capsys.readouterr().err
