"""Small-map convolution selection: the GEMM path equals the convolution, and is used only at inference."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from visiontasks.conv_select import GEMM, ONEDNN, SelectedConv2d, gemm_conv2d, select_conv_kernels


@pytest.mark.parametrize("cin,cout,kernel,stride,padding,dilation,bias,n,size", [
    (8, 16, 3, 1, 1, 1, True, 1, (7, 7)),
    (8, 16, 3, 2, 1, 1, True, 2, (14, 13)),
    (4, 6, (3, 1), 1, (1, 0), 1, False, 1, (9, 5)),
    (4, 6, 3, 1, 2, 2, True, 3, (8, 8)),
    (5, 7, 1, 1, 0, 1, True, 1, (6, 4)),
])
@pytest.mark.parametrize("channels_last", [False, True])
def test_gemm_equals_conv(cin, cout, kernel, stride, padding, dilation, bias, n, size, channels_last):
    torch.manual_seed(0)
    conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, dilation=dilation, bias=bias)
    x = torch.randn(n, cin, *size)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    expected = F.conv2d(x, conv.weight, conv.bias, stride, padding, dilation)
    got = gemm_conv2d(x, conv, conv.weight, conv.bias)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert got.is_contiguous(memory_format=torch.channels_last) == (channels_last and expected.shape[2:] != (1, 1))


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=2))


def test_select_reclasses_plain_convs_and_keeps_weights():
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert select_conv_kernels(model) == 2
    assert all(type(m) is SelectedConv2d for m in model if isinstance(m, nn.Conv2d))
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(ValueError, match="max_positions must be a positive int, got 0"):
        select_conv_kernels(model, max_positions=0)


def test_inference_on_small_maps_chooses_and_matches():
    model = _model().eval()
    x = torch.randn(1, 3, 10, 10)
    with torch.inference_mode():
        expected = model(x)
    select_conv_kernels(model)
    with torch.inference_mode():
        got = model(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    first, grouped = model[0], model[2]
    assert list(first.choices.values())[0] in (GEMM, ONEDNN)
    assert list(first.choices) == [((1, 3, 10, 10), torch.float32, None, False)]
    assert "choices" not in grouped.__dict__  # groups > 1: always PyTorch's own path
    first.choices[next(iter(first.choices))] = GEMM  # the GEMM branch gives the same answer
    with torch.inference_mode():
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)


def test_training_grad_and_large_maps_keep_pytorch_path():
    model = _model()
    select_conv_kernels(model, max_positions=50)
    x = torch.randn(1, 3, 6, 6, requires_grad=True)
    model.train()
    model(x).sum().backward()  # training: autograd through the usual conv
    assert x.grad is not None
    model.eval()
    with torch.no_grad():
        model(torch.randn(1, 3, 6, 6))  # 36 positions: eligible
        model(torch.randn(1, 3, 8, 8))  # 64 > 50 positions: oneDNN without timing
    assert list(model[0].choices) == [((1, 3, 6, 6), torch.float32, None, False)]
    model(torch.randn(1, 3, 5, 5))  # grad enabled: not eligible
    assert len(model[0].choices) == 1


def test_inference_layout_is_load_models_fp32_layout():
    from visiontasks.conv_select import inference_layout

    cpu, cuda = _model().eval(), _model().eval()
    assert inference_layout(cpu, "cpu") is cpu
    assert type(cpu[0]) is SelectedConv2d and cpu[0].weight.is_contiguous(memory_format=torch.channels_last)
    inference_layout(cuda, "cuda")  # the layout only: no CUDA device is needed to decide it
    assert type(cuda[0]) is nn.Conv2d and cuda[0].weight.is_contiguous(memory_format=torch.channels_last)
