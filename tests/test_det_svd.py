"""Truncated SVD of fc layers (Fast R-CNN §3.1): exact at full rank, graceful below, through the CLI."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import visiontasks
from visiontasks.detection.svd import compress_fc, svd_linear

REPO = Path(__file__).resolve().parents[1]


def test_full_rank_reproduces_the_layer_and_lower_ranks_degrade_gracefully():
    torch.manual_seed(0)
    layer = torch.nn.Linear(96, 64)
    x = torch.randn(32, 96)
    ref = layer(x)
    torch.testing.assert_close(svd_linear(layer, 64)(x), ref, rtol=1e-5, atol=1e-5)
    errors = [(svd_linear(layer, t)(x) - ref).norm().item() / ref.norm().item() for t in (8, 16, 32, 48, 64)]
    assert errors == sorted(errors, reverse=True) and errors[-1] < 1e-5 and errors[0] < 1.0
    # the rank-t error of the weight is the (t+1)-th singular value (Eckart–Young), here in the spectral norm
    s = torch.linalg.svdvals(layer.weight.double())
    w16 = svd_linear(layer, 16)
    approx = (w16[1].weight @ w16[0].weight).double()
    assert torch.linalg.matrix_norm(layer.weight.double() - approx, ord=2).item() == pytest.approx(s[16].item(), rel=1e-4)
    assert sum(p.numel() for p in w16.parameters()) == 16 * (96 + 64) + 64
    with pytest.raises(ValueError, match="rank"):
        svd_linear(layer, 65)


def test_compress_fc_replaces_fc6_and_fc7_of_a_detector():
    torch.manual_seed(0)
    model = visiontasks.get_model("fast_rcnn", num_classes=3, backbone="small", min_size=96, max_size=128).eval()
    image = torch.rand(3, 90, 120)
    props = [torch.tensor([[10.0, 20, 60, 70], [0, 0, 50, 40], [30, 30, 110, 85]])]
    model.score_thresh = 0.0
    with torch.no_grad():
        ref = model([image], proposals=props)[0]
        compress_fc(model, [256, 256])  # full rank of the small head (6272 → 256 → 256)
        full = model([image], proposals=props)[0]
    torch.testing.assert_close(full["scores"], ref["scores"], rtol=1e-4, atol=1e-5)
    built = visiontasks.get_model("fast_rcnn", num_classes=3, backbone="small", fc_svd_ranks=[32, None])
    fc6 = built.roi_head.box_head[1]
    assert isinstance(fc6, torch.nn.Sequential) and fc6[0].weight.shape == (32, 64 * 2 * 49)
    assert isinstance(built.roi_head.box_head[3], torch.nn.Linear)  # fc7 kept


def test_compress_tool_writes_a_checkpoint_that_loads_and_predicts(tmp_path):
    out = tmp_path / "svd.pt"
    r = subprocess.run([sys.executable, "tools/compress.py", "weights/default_det.pt", str(out), "--ranks", "64", "32"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "->" in r.stdout
    model = visiontasks.load_model(out, preset="evaluate")
    assert model.config["model"]["fc_svd_ranks"] == [64, 32]
    assert model.model.roi_head.box_head[1][0].weight.shape[0] == 64
    result = model.predict(torch.rand(3, 160, 160))
    assert result.boxes.shape[-1] == 4
    again = subprocess.run([sys.executable, "tools/compress.py", str(out), str(tmp_path / "x.pt"), "--ranks", "8"],
                           cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "already compressed" in again.stderr
