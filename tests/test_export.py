"""ONNX export (visiontasks.export, tools/export.py): onnxruntime against PyTorch on the same inputs.

Tolerances (visiontasks.export.TOLERANCE): boxes 1e-2 px (1e-4 of the longer side on images over
100 px), scores 1e-4, labels equal; segmentation
logits 1e-3 (relative to the largest), masks at most 0.1 % of pixels differing.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ort = pytest.importorskip("onnxruntime", reason="the export extra is not installed (pip install -e '.[export]')")
pytest.importorskip("onnx", reason="the export extra is not installed (pip install -e '.[export]')")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

import export as export_tool  # noqa: E402
from _common import run_cli  # noqa: E402

import visiontasks  # noqa: E402
from visiontasks.api import to_tensor_image  # noqa: E402
from visiontasks.export import TOLERANCE, ExportError, check_onnx, export_onnx  # noqa: E402
from visiontasks.summary import fixed_proposals  # noqa: E402


def _session(path: Path) -> "ort.InferenceSession":
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _assert_same_detections(ref: dict, out: list[np.ndarray]) -> None:
    boxes, scores, labels = out
    assert boxes.shape == (len(ref["scores"]), 4) and boxes.dtype == np.float32
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, ref["labels"].numpy())
    np.testing.assert_allclose(boxes, ref["boxes"].numpy(), atol=TOLERANCE["boxes_px"], rtol=0)  # images ≤ 210 px
    np.testing.assert_allclose(scores, ref["scores"].numpy(), atol=TOLERANCE["scores"], rtol=0)


def _embedded_images(root: Path, count: int) -> list[Path]:
    return sorted((root / "JPEGImages").glob("*.*"))[:count]


def test_default_detector_real_images_and_no_detections(embedded_root: Path, tmp_path: Path) -> None:
    predictor = visiontasks.load_model("default")  # faster_rcnn, small backbone, visualize preset 0.7
    paths = _embedded_images(embedded_root, 2)
    report = export_onnx(predictor.model, "detection", tmp_path / "det.onnx", image_size=(3, 96, 128),
                         check_images=[(str(p), to_tensor_image(p)) for p in paths])
    assert len(report.checks) == 5
    session = _session(tmp_path / "det.onnx")
    found = 0
    for path in paths:  # the embedded shapes: the trained detector finds them
        image = to_tensor_image(path)
        ref = predictor.predict(path)
        out = session.run(None, {"image": image.numpy()})
        _assert_same_detections({"boxes": ref.boxes, "scores": ref.scores, "labels": ref.labels}, out)
        found += len(ref)
    assert found > 0
    # An image with no detections (torchvision #2380): empty outputs of the right shapes, not an error.
    blank = torch.full((3, 70, 90), 0.5)
    assert len(predictor.predict(blank)) == 0
    boxes, scores, labels = session.run(None, {"image": blank.numpy()})
    assert boxes.shape == (0, 4) and scores.shape == (0,) and labels.shape == (0,)


def test_two_stage_dynamic_size_and_proposals_input(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = visiontasks.get_model("faster_rcnn", num_classes=4, backbone="small", min_size=96, max_size=160).eval()
    export_onnx(model, "detection", tmp_path / "frcnn.onnx", image_size=(3, 64, 80))
    session = _session(tmp_path / "frcnn.onnx")
    for h, w in ((50, 210), (130, 60)):  # sizes the export never saw (the second is resized up)
        image = torch.rand(3, h, w)
        with torch.no_grad():
            ref = model([image])[0]
        assert len(ref["scores"]) > 0
        _assert_same_detections(ref, session.run(None, {"image": image.numpy()}))

    fast = visiontasks.get_model("fast_rcnn", num_classes=4, backbone="small", min_size=96, max_size=160).eval()
    report = export_onnx(fast, "detection", tmp_path / "fast.onnx", image_size=(3, 64, 80), num_proposals=40)
    assert report.inputs == ["image", "proposals"]
    image = torch.rand(3, 90, 70)
    props = fixed_proposals(90, 70, 25)
    with torch.no_grad():
        ref = fast([image], proposals=[props])[0]
    _assert_same_detections(ref, _session(tmp_path / "fast.onnx").run(None, {"image": image.numpy(),
                                                                             "proposals": props.numpy()}))


def test_yolov1_any_image_size(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = visiontasks.get_model("yolov1", num_classes=4, backbone="small", input_size=160, head="conv",
                                  fc_dim=64).eval()  # 10x10 map → 7x7 grid: the non-dividing pooling
    export_onnx(model, "detection", tmp_path / "yolo.onnx", image_size=(3, 64, 96))
    image = torch.rand(3, 120, 45)
    with torch.no_grad():
        ref = model([image])[0]
    assert len(ref["scores"]) > 0
    _assert_same_detections(ref, _session(tmp_path / "yolo.onnx").run(None, {"image": image.numpy()}))


def test_segmenter_fixed_size_batch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = visiontasks.get_model("fcn_small", num_classes=4).eval()
    torch.nn.init.normal_(model.score8.weight, std=0.05)  # FCN zero-initialises it: make it count
    export_onnx(model, "segmentation", tmp_path / "seg.onnx", image_size=(3, 48, 64))
    session = _session(tmp_path / "seg.onnx")
    images = torch.rand(2, 3, 48, 64)
    with torch.no_grad():
        ref = model(images)["out"]
    logits, mask = session.run(None, {"images": images.numpy()})
    assert logits.shape == (2, 4, 48, 64) and mask.shape == (2, 48, 64)
    np.testing.assert_allclose(logits, ref.numpy(), atol=TOLERANCE["logits"] * max(1.0, float(ref.abs().max())))
    assert (mask != ref.argmax(1).numpy()).mean() <= TOLERANCE["mask_mismatch"]
    with pytest.raises(Exception, match="(?i)dimension"):  # another size is refused, never mis-segmented
        session.run(None, {"images": np.random.rand(1, 3, 48, 80).astype(np.float32)})


def test_unexportable_models_refused_with_the_part_named(tmp_path: Path) -> None:
    rcnn = visiontasks.get_model("rcnn", num_classes=4, backbone="small").eval()
    with pytest.raises(ExportError, match="rcnn: cannot export to ONNX: .*WarpedRegionPooler"):
        export_onnx(rcnn, "detection", tmp_path / "r.onnx", name="rcnn")
    spp = visiontasks.get_model("spp_net", num_classes=4, backbone="small").eval()
    with pytest.raises(ExportError, match="ScalePyramid"):
        export_onnx(spp, "detection", tmp_path / "s.onnx", name="spp_net")
    assert not list(tmp_path.iterdir())


def test_a_graph_that_froze_the_size_is_caught(tmp_path: Path) -> None:
    """The model traced as it is (Python-int sizes, anchor cache) gives a graph that only fits the
    example size: the check refuses it instead of writing it."""

    class Naive(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, image: torch.Tensor):
            d = self.model([image])[0]
            return d["boxes"], d["scores"], d["labels"]

    torch.manual_seed(0)
    model = visiontasks.get_model("faster_rcnn", num_classes=4, backbone="small", min_size=64, max_size=128).eval()
    model.score_thresh = 0.0
    naive = Naive(model).eval()
    with pytest.warns(Warning):
        torch.onnx.export(naive, (torch.rand(3, 64, 80),), tmp_path / "naive.onnx", dynamo=False, opset_version=17,
                          input_names=["image"], output_names=["boxes", "scores", "labels"],
                          dynamic_axes={"image": {1: "h", 2: "w"}, "boxes": {0: "n"}, "scores": {0: "n"},
                                        "labels": {0: "n"}})
    model.eval()
    with pytest.raises(ExportError):
        check_onnx(tmp_path / "naive.onnx", model, "detection", [("other size", torch.rand(3, 100, 60))])


def test_tool_writes_onnx_and_json_or_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "default.onnx"
    assert run_cli(export_tool.main, ["--out", str(out), "--input", "3x64x80"]) == 0
    assert out.is_file() and "onnxruntime matches PyTorch" in capsys.readouterr().out
    import json

    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["classes"] == ["circle", "square", "triangle"] and meta["score_thresh"] == 0.7
    assert run_cli(export_tool.main, ["--config", str(REPO / "configs/detection/rcnn_small.yaml"),
                                      "--out", str(tmp_path / "r.onnx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "WarpedRegionPooler" in err[0]
    assert run_cli(export_tool.main, ["--out", str(tmp_path / "x.onnx"), "--input", "3x64"]) == 2


def _perturb_zero_init(model: torch.nn.Module) -> None:
    """Random values in the layers the papers zero-initialise, so that the outputs are not all 0."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1 and not p.any():
                p.copy_(torch.randn(p.shape, generator=g) * 0.01)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fcn8s", "deconvnet", "dilated_context"])
def test_vgg16_segmenters(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = visiontasks.get_model(name, num_classes=4).eval()
    _perturb_zero_init(model)
    report = export_onnx(model, "segmentation", tmp_path / f"{name}.onnx", image_size=(3, 64, 96), name=name)
    assert len(report.checks) == 3
    image = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        ref = model(image)["out"]
    assert float(ref.abs().max()) > 0
    logits, mask = _session(tmp_path / f"{name}.onnx").run(None, {"images": image.numpy()})
    np.testing.assert_allclose(logits, ref.numpy(), atol=TOLERANCE["logits"] * max(1.0, float(ref.abs().max())))
