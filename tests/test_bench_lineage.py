"""bench/lineage.py: --precision parsing, the bf16 row built as load_model builds it, the tables' ratios."""
from __future__ import annotations

import pytest
import torch

from _bench import load_bench


def _load_bench():
    return load_bench("lineage")


def test_precision_list_is_checked():
    bench = _load_bench()
    assert bench._precisions("fp32, bf16", plain=False) == ["fp32", "bf16"]
    with pytest.raises(SystemExit, match="fp16"):
        bench._precisions("fp32,fp16", plain=False)
    with pytest.raises(SystemExit, match="--plain"):
        bench._precisions("bf16", plain=True)


def test_bf16_row_stores_dense_weights_as_load_model_does():
    from visiontasks.precision import cpu_bf16_supported

    bench = _load_bench()
    model = bench._build("yolov1_small", "bf16", plain=False)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    expected = torch.bfloat16 if cpu_bf16_supported() else torch.float32  # fp32 fallback without native bf16
    assert convs and all(m.weight.dtype == expected for m in convs)
    assert model.score_thresh == 0.05
    fp32 = bench._build("yolov1_small", "fp32", plain=True)
    assert all(m.weight.dtype == torch.float32 for m in fp32.modules() if isinstance(m, torch.nn.Conv2d))


def test_tables_divide_within_a_precision_and_set_fp32_beside_bf16(capsys):
    bench = _load_bench()

    def row(name, precision, seconds, cpu, proposals=None):
        return {"name": name, "precision": precision, "seconds": seconds, "cpu_seconds": cpu, "rss_mib": 100.0,
                "parameters": 10, "proposals": proposals}

    results = [row("rcnn_vgg16", "fp32", [40.0], [80.0], 2000.0), row("rcnn_vgg16", "bf16", [20.0], [40.0], 2000.0),
               row("faster_rcnn_vgg16", "fp32", [2.0, 6.0], [8.0, 8.0]),
               row("faster_rcnn_vgg16", "bf16", [1.0, 3.0], [2.0, 2.0]),
               {"name": "yolov1", "precision": "bf16", "error": "RuntimeError: x"}]
    bench._print_tables(results, ss=[1.0, 3.0], images=2, threads=2, plain=False)
    out = capsys.readouterr().out
    # R-CNN fp32: 40 s model + 2 s selective search; speed-up vs itself 1x; Faster R-CNN fp32 mean 4 s -> 10x.
    assert "| rcnn_vgg16 | fp32 | 1 | 40.000 | 42.000 | 1× | 0.10× | 80.000 |" in out
    # bf16 rows divide by the bf16 references: 20 / 2 = 10x, end to end 2 / 22.
    assert "| faster_rcnn_vgg16 | bf16 | 2 | 2.000 | 2.000 | 10× | 1.00× | 2.000 |" in out
    assert "| rcnn_vgg16 | bf16 | 1 | 20.000 | 22.000 | 1× | 0.09× |" in out
    assert "| yolov1 | bf16 | | RuntimeError: x |" in out
    assert "| faster_rcnn_vgg16 | 4.000 | 2.000 | 2.00× | 4.00× |" in out
    assert "| yolov1 | failed / not run | failed / not run |  |  |" in out
