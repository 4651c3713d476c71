"""Precision options: amp/precision values, fp32 boundaries under autocast, bf16 vs fp32 predictions."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from torchvision.ops import box_iou

from visiontasks import precision as P

needs_bf16 = pytest.mark.skipif(not P.cpu_bf16_supported(), reason="this CPU has no native bf16 (AVX-512 BF16/AMX)")


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("amp", [True, None, "auto"])
def test_auto_is_bf16_on_a_native_bf16_cpu_else_fp32_silently(monkeypatch, caplog, amp, native: bool) -> None:
    monkeypatch.setattr(P, "cpu_bf16_supported", lambda: native)
    P._warn_once.cache_clear()
    with caplog.at_level(logging.WARNING, logger="visiontasks"):
        assert P.resolve_amp(amp, "cpu") is (torch.bfloat16 if native else None)
    assert not caplog.records


@pytest.mark.parametrize("amp, device, want", [
    (False, "cpu", None), ("none", "cpu", None),
    (True, "cuda", torch.float16), ("auto", "cuda", torch.float16), ("fp16", "cuda", torch.float16),
    ("bf16", "cuda", torch.bfloat16), (False, "cuda", None),
])
def test_resolve_amp_table(amp, device: str, want) -> None:
    assert P.resolve_amp(amp, device) is want


def test_resolve_amp_bf16_on_cpu_follows_native_support(monkeypatch, caplog) -> None:
    monkeypatch.setattr(P, "cpu_bf16_supported", lambda: True)
    assert P.resolve_amp("bf16", "cpu") is torch.bfloat16
    monkeypatch.setattr(P, "cpu_bf16_supported", lambda: False)
    P._warn_once.cache_clear()
    with caplog.at_level(logging.WARNING, logger="visiontasks"):
        assert P.resolve_amp("bf16", "cpu") is None
        assert P.resolve_precision("bf16", "cpu") is None
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and all("no native bf16" in line and "\n" not in line for line in lines)


@pytest.mark.parametrize("call, match", [
    (lambda: P.resolve_amp("fp16", "cpu"), "needs CUDA"),
    (lambda: P.resolve_amp("bf17", "cpu"), "'bf17'"),
    (lambda: P.resolve_amp(1, "cpu"), "got 1"),
    (lambda: P.resolve_precision("fp16", "cpu"), "'fp16'"),
])
def test_bad_values_are_named(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def test_to_float32_casts_nested_low_precision_tensors_only() -> None:
    out = P.to_float32({"a": (torch.ones(2, dtype=torch.bfloat16), [torch.ones(1, dtype=torch.float16)]),
                        "b": torch.ones(1, dtype=torch.int64), "c": "x"})
    assert out["a"][0].dtype == torch.float32 and out["a"][1][0].dtype == torch.float32
    assert out["b"].dtype == torch.int64 and out["c"] == "x"


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8))
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.head(self.body(x))}


def test_fp32_boundaries_keep_sequential_layers_in_bf16_and_return_fp32() -> None:
    net = _Net()
    seen: dict[str, torch.dtype] = {}
    net.body[0].register_forward_hook(lambda m, i, o: seen.__setitem__("fc_inside", o.dtype))
    net.body.register_forward_hook(lambda m, i, o: seen.__setitem__("body", o.dtype))
    x = torch.randn(3, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert net(x)["out"].dtype == torch.bfloat16  # plain autocast leaks bf16 into the outputs
    handles = P.fp32_boundaries(net)
    assert P.fp32_boundaries(net) is handles  # idempotent
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x)["out"]
    assert out.dtype == torch.float32 and seen["fc_inside"] == torch.bfloat16
    # the body's own forward hook ran before the cast hook registered later; its caller sees float32
    assert net.body(x).dtype == torch.float32
    assert torch.equal(net(x)["out"], _Net.forward(net, x)["out"])  # no-op outside autocast


def test_cast_dense_weights_keeps_norms_fp32_and_matches_autocast() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4), nn.Flatten(), nn.Linear(4 * 36, 2))
    x = torch.rand(2, 3, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want = net(x)
    P.cast_dense_weights(net, torch.bfloat16)
    assert net[0].weight.dtype == net[3].bias.dtype == torch.bfloat16 and net[1].weight.dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(net(x), want)  # the same rounding as autocast's per-call casts


def test_autocast_forward_runs_the_model_in_bf16_for_any_caller_and_exits_on_errors() -> None:
    net = _Net()
    P.fp32_boundaries(net)
    P.cast_dense_weights(net, torch.bfloat16)
    P.autocast_forward(net, "cpu", torch.bfloat16)
    assert net(torch.randn(3, 4))["out"].dtype == torch.float32  # bf16 weights, no caller-side autocast
    with pytest.raises(RuntimeError):
        net(torch.randn(3, 5))  # wrong width: forward raises inside the hooks' autocast
    assert not torch.is_autocast_enabled("cpu")


def _match(ref, other) -> tuple[torch.Tensor, torch.Tensor]:
    """For each reference detection: the best IoU with a same-label detection of ``other`` and the
    score difference to it (IoU 0, difference 1 when none)."""
    ious, diffs = [], []
    for box, label, score in zip(ref.boxes, ref.labels, ref.scores):
        same = other.labels == label
        if not same.any():
            ious.append(0.0), diffs.append(1.0)
            continue
        iou = box_iou(box[None], other.boxes[same])[0]
        j = int(iou.argmax())
        ious.append(float(iou[j])), diffs.append(abs(float(score - other.scores[same][j])))
    return torch.tensor(ious), torch.tensor(diffs)


@needs_bf16
def test_bf16_and_fp32_predictions_agree_on_the_default_weights(embedded_root: Path) -> None:
    """Tolerance: every fp32 detection scoring >= 0.5 has a same-label bf16 detection with IoU >= 0.5
    and a score within 0.05; the median IoU is >= 0.98 (bf16 keeps ~3 significant digits in the
    network; a reordered proposal may move a box by a few pixels)."""
    from visiontasks import load_model

    images = sorted((embedded_root / "JPEGImages").glob("*.jpg"))[:6]
    fp32 = load_model("default", preset="evaluate")
    bf16 = load_model("default", preset="evaluate", precision="bf16")
    assert bf16.precision == "bf16" and bf16._dtype is torch.bfloat16
    all_ious = []
    for path in images:
        a, b = fp32.predict(str(path)), bf16.predict(str(path))
        assert b.boxes.dtype == torch.float32 and b.scores.dtype == torch.float32
        keep = a.scores >= 0.5
        assert keep.any()
        ref = type("R", (), {"boxes": a.boxes[keep], "labels": a.labels[keep], "scores": a.scores[keep]})
        ious, diffs = _match(ref, b)
        assert (ious >= 0.5).all() and (diffs <= 0.05).all(), (path.name, ious, diffs)
        all_ious.append(ious)
    assert torch.cat(all_ious).median() >= 0.98


def test_channels_last_fp32_equals_nchw(embedded_root: Path) -> None:
    """The exact path (fp32, channels-last, inference mode) gives the NCHW model's detections."""
    from visiontasks import load_model
    from visiontasks.api import to_tensor_image

    predictor = load_model("default", preset="evaluate")
    assert next(p for p in predictor.model.parameters() if p.dim() == 4).is_contiguous(
        memory_format=torch.channels_last)
    nchw = load_model("default", preset="evaluate").model.to(memory_format=torch.contiguous_format)
    path = sorted((embedded_root / "JPEGImages").glob("*.jpg"))[0]
    got = predictor.predict(str(path))
    with torch.no_grad():
        want = nchw([to_tensor_image(str(path))])[0]
    assert torch.equal(got.labels, want["labels"])
    torch.testing.assert_close(got.boxes, want["boxes"], atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(got.scores, want["scores"], atol=1e-4, rtol=1e-4)
