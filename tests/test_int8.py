"""int8 export (onnxruntime static quantization) and ``eval.py det --onnx`` (issue 24).

Tolerances stated here, not tuned: on images of the embedded dataset the int8 detector finds
at least 90 % of the float graph's boxes with score ≥ 0.5 (same label, IoU ≥ 0.5) and the int8
segmenter gives the float graph's class on at least 97 % of the pixels.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("onnxruntime", reason="the export extra is not installed (pip install -e '.[export]')")
pytest.importorskip("onnx", reason="the export extra is not installed (pip install -e '.[export]')")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

import eval as eval_tool  # noqa: E402
import export as export_tool  # noqa: E402
from _common import run_cli  # noqa: E402

from visiontasks.errors import InputError  # noqa: E402
from visiontasks.export import quantize  # noqa: E402
from visiontasks.export.onnx_predictor import load_onnx  # noqa: E402
from visiontasks.export.quantize import (calibration_images, detection_agreement, has_vnni,  # noqa: E402
                                         mask_agreement, vnni_warning)


def _dets(boxes: list, scores: list, labels: list) -> dict:
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), "scores": torch.tensor(scores),
            "labels": torch.tensor(labels, dtype=torch.int64)}


def test_detection_agreement_hand_computed() -> None:
    ref = _dets([[0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 10, 10]], [0.9, 0.8, 0.3], [1, 2, 1])
    # IoU([0,0,10,10], [0,0,10,12]) = 100/120 ≥ 0.5: found; the label-2 box is matched only by a label-1 box
    test = _dets([[0, 0, 10, 12], [20, 20, 30, 30]], [0.7, 0.6], [1, 1])
    assert detection_agreement(ref, test) == pytest.approx(1 / 2)
    # IoU([0,0,10,10], [0,0,10,25]) = 0.4 < 0.5: not found
    assert detection_agreement(ref, _dets([[0, 0, 10, 25], [20, 20, 30, 30]], [0.7, 0.6], [1, 2])) == pytest.approx(1 / 2)
    assert detection_agreement(ref, _dets([], [], [])) == 0.0
    assert detection_agreement(_dets([[0, 0, 1, 1]], [0.2], [1]), test) is None  # nothing confident to find
    a = torch.zeros(1, 3, 2, 2)
    a[0, 1] = 1.0
    b = a.clone()
    b[0, 2, 0, 0] = 5.0  # one of four pixels changes class
    assert mask_agreement(a, b) == pytest.approx(0.75)


def test_vnni_check_is_a_flag_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    assert has_vnni({"avx2", "avx512_vnni"}) and has_vnni({"avx_vnni"}) and not has_vnni({"avx2", "avx512f"})
    line = vnni_warning({"avx2"})
    assert line is not None and "\n" not in line and "slower" in line
    assert vnni_warning({"avx512_vnni"}) is None
    monkeypatch.setattr(quantize, "cpu_flags", lambda: {"sse4_2", "avx2"})
    assert not has_vnni() and vnni_warning() is not None


def test_calibration_images_that_do_not_exist(tmp_path: Path, embedded_root: Path) -> None:
    with pytest.raises(InputError, match="calibration folder does not exist"):
        calibration_images(tmp_path / "nowhere", "trainval", 4)
    with pytest.raises(InputError, match="no split 'nosuch'"):
        calibration_images(embedded_root, "nosuch", 4)
    fake = tmp_path / "voc"
    (fake / "ImageSets" / "Main").mkdir(parents=True)
    (fake / "JPEGImages").mkdir()
    (fake / "ImageSets" / "Main" / "trainval.txt").write_text("missing_001\n")
    with pytest.raises(InputError, match=r"missing_001\.jpg: calibration image does not exist"):
        calibration_images(fake, "trainval", 4)
    images = calibration_images(embedded_root, "trainval", 2, size=(3, 48, 64))
    assert len(images) == 2 and images[0].shape == (3, 48, 64) and 0.0 <= float(images[0].min()) <= 1.0


def test_tool_bad_inputs_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = [(["--config", str(REPO / "configs/detection/rcnn_small.yaml")], "WarpedRegionPooler"),
             (["--config", str(REPO / "configs/detection/spp_net_small.yaml")], "ScalePyramid"),
             (["--config", str(REPO / "configs/detection/fast_rcnn_small.yaml")], "takes proposals"),
             (["--calib-root", str(tmp_path / "nowhere")], "calibration folder does not exist")]
    for extra, words in cases:
        assert run_cli(export_tool.main, [*extra, "--quantize", "int8", "--out", str(tmp_path / "q.onnx")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], (extra, err)
        assert not (tmp_path / "q.onnx").exists()
    assert run_cli(eval_tool.main, ["det", "--onnx", str(tmp_path / "none.onnx"), "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such ONNX file" in err[0]


def test_no_vnni_warns_one_line_and_still_writes(tmp_path: Path, embedded_root: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(quantize, "cpu_flags", lambda: {"sse4_2", "avx2"})
    out = tmp_path / "seg_int8.onnx"
    assert run_cli(export_tool.main, ["--config", str(REPO / "configs/segmentation/default.yaml"), "--input",
                                      "3x64x64", "--quantize", "int8", "--calib-root", str(embedded_root),
                                      "--calib-images", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert sum("no VNNI" in line for line in printed) == 1
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["precision"] == "int8" and meta["calibration"]["images"] == 2
    assert out.is_file() and (tmp_path / "seg_int8.fp32.onnx").is_file()


@pytest.mark.slow
def test_default_detector_int8_close_to_float_and_eval_onnx(tmp_path: Path, embedded_root: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "det_int8.onnx"
    assert run_cli(export_tool.main, ["--quantize", "int8", "--calib-root", str(embedded_root), "--calib-images", "16",
                                      "--preset", "evaluate", "--out", str(out)]) == 0
    fp32, int8 = load_onnx(tmp_path / "det_int8.fp32.onnx"), load_onnx(out)
    test_ids = (embedded_root / "ImageSets/Main/test.txt").read_text().split()[:12]
    from visiontasks.api import to_tensor_image

    shares = []
    for image_id in test_ids:  # test images: not seen by calibration
        image = to_tensor_image(str(embedded_root / "JPEGImages" / f"{image_id}.jpg"))
        share = detection_agreement(fp32([image])[0], int8([image])[0])
        if share is not None:
            shares.append(share)
    assert len(shares) >= 8 and sum(shares) / len(shares) >= 0.9, shares
    capsys.readouterr()
    assert run_cli(eval_tool.main, ["det", "--onnx", str(out), "--root", str(embedded_root), "--split", "test",
                                    "--out", str(tmp_path / "r.json")]) == 0
    result = json.loads((tmp_path / "r.json").read_text())
    assert set(result["per_class"]) == {"circle", "square", "triangle"} and 0.0 <= result["mAP"] <= 1.0


@pytest.mark.slow
def test_default_segmenter_int8_pixel_agreement(tmp_path: Path, embedded_root: Path) -> None:
    out = tmp_path / "seg_int8.onnx"
    assert run_cli(export_tool.main, ["--config", "default-seg", "--input", "3x160x160", "--quantize", "int8",
                                      "--calib-root", str(embedded_root), "--calib-images", "16", "--out", str(out)]) == 0
    fp32, int8 = load_onnx(tmp_path / "seg_int8.fp32.onnx"), load_onnx(out)
    images = calibration_images(embedded_root, "test", 8, size=(3, 160, 160))
    batch = torch.stack(images)
    assert mask_agreement(fp32(batch)["out"], int8(batch)["out"]) >= 0.97


def _write_graph(path: Path, op: str) -> None:
    """A one-node float graph ``y = op(x)`` (x: (1, 3, 4, 4)); MatMul multiplies by a 4x4 identity."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")] if op == "MatMul" else []
    node = helper.make_node(op, ["x", "w"] if op == "MatMul" else ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_graph_without_quantizable_layers_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write_graph(tmp_path / "relu.onnx", "Relu")  # no Conv / Gemm / MatMul: nothing int8 could run
    images = [torch.rand(3, 4, 4)]
    code = run_cli(lambda argv: quantize.quantize_int8(tmp_path / "relu.onnx", tmp_path / "q.onnx", images, "relu"), [])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "relu: the graph has no Conv/Gemm/MatMul layer to quantize" in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["relu.onnx"]  # nothing written


def test_quantizer_failure_is_one_line_and_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    import onnxruntime.quantization as ortq

    _write_graph(tmp_path / "mm.onnx", "MatMul")

    def refuse(*args, **kwargs):
        raise RuntimeError("Unsupported operator in node n\nstack line 2")
    monkeypatch.setattr(ortq, "quantize_static", refuse)
    code = run_cli(lambda argv: quantize.quantize_int8(tmp_path / "mm.onnx", tmp_path / "q.onnx", [torch.rand(3, 4, 4)],
                                                       "mm"), [])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "mm: onnxruntime cannot quantize this graph to int8: Unsupported operator in node n" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mm.onnx"]  # the temporary file is removed


def test_tool_model_with_no_quantizable_layer(tmp_path: Path, embedded_root: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    # A model none of whose layers is of a quantized kind, simulated by quantizing a kind no model has.
    monkeypatch.setattr(quantize, "INT8_OPS", ("NoSuchOp",))
    out = tmp_path / "seg_int8.onnx"
    code = run_cli(export_tool.main, ["--config", str(REPO / "configs/segmentation/default.yaml"), "--input", "3x32x32",
                                      "--quantize", "int8", "--calib-root", str(embedded_root), "--calib-images", "1",
                                      "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "the graph has no NoSuchOp layer to quantize" in err[0], err
    assert not out.exists()


def test_tensor_agreement_of_a_quantized_matmul(tmp_path: Path) -> None:
    import numpy as np

    from visiontasks.export.agreement import feature_tensor, tensor_agreement

    _write_graph(tmp_path / "mm.onnx", "MatMul")  # y = x @ I
    g = torch.Generator().manual_seed(0)
    calib = [torch.rand(1, 3, 4, 4, generator=g) for _ in range(4)]
    quantize.quantize_int8(tmp_path / "mm.onnx", tmp_path / "mm8.onnx", calib, "mm")
    assert feature_tensor(tmp_path / "mm.onnx") == "y"  # no RoI pooling: the last MatMul's output
    x = {"x": calib[0].numpy()}
    same = tensor_agreement(tmp_path / "mm.onnx", tmp_path / "mm.onnx", x, "y")
    assert same["rel_l2"] == 0.0 and same["cosine"] == pytest.approx(1.0) and same["max_abs"] == 0.0
    q = tensor_agreement(tmp_path / "mm.onnx", tmp_path / "mm8.onnx", x, "y")
    # x in [0, 1] on a uint8 grid of step ≤ 1/255, the identity weight exact in int8 (127 · 1/127), the
    # output on a grid of step ≤ 1/255 again: each value moves by at most about one step, not zero everywhere
    assert 0.0 < q["max_abs"] <= 1.5 / 255 and q["rel_l2"] < 0.01 and q["cosine"] > 0.999
    assert q["ref_max_abs"] == pytest.approx(float(np.abs(calib[0].numpy()).max()))


def _optimized_op_counts(path: Path, tmp_path: Path) -> dict[str, int]:
    """onnxruntime's own optimised graph of ``path`` (its QDQ fusions applied), as op-type counts."""
    import collections

    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    options.log_severity_level = 3
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return dict(collections.Counter(n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node))


def test_convolutions_with_equal_biases_become_int8(tmp_path: Path) -> None:
    """Zero biases (untrained VGG16 layers) are tied through Identity nodes by the exporter; each conv
    must still run as QLinearConv (before the fix two of three stayed float Conv)."""
    import onnx

    from visiontasks.export.onnx import OPSET

    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3, padding=1),
                               torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3, padding=1)).eval()
    for layer in conv[::2]:
        torch.nn.init.zeros_(layer.bias)
    path = tmp_path / "f.onnx"
    torch.onnx.export(conv, (torch.rand(1, 3, 16, 16),), str(path), dynamo=False, opset_version=OPSET,
                      input_names=["images"], do_constant_folding=True)  # batched, as segmenters
    graph = onnx.load(str(path))
    assert sum(n.op_type == "Identity" for n in graph.graph.node) == 2  # the exporter ties the equal biases
    assert quantize.untie_initializers(graph) == 2
    assert not any(n.op_type == "Identity" for n in graph.graph.node)
    g = torch.Generator().manual_seed(0)
    quantize.quantize_int8(path, tmp_path / "q.onnx", [torch.rand(3, 16, 16, generator=g) for _ in range(2)], "c")
    ops = _optimized_op_counts(tmp_path / "q.onnx", tmp_path)
    assert ops.get("QLinearConv") == 3 and "Conv" not in ops, ops
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.onnx", "optimized.onnx", "q.onnx"]  # no temporary left
