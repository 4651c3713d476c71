"""banded_stem (visiontasks/banded_stem.py): VGG16's conv1 block in chunks and bands, bit for bit.

Every split result is checked with ``torch.equal`` against the whole block (``nn.Sequential``) on
the same bf16 input: band counts from 1 to one per two output rows, chunks of samples, odd sizes,
NCHW and channels-last, batches of one to seven; then which layers form a block, how a size is
split, and where the splitting applies.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from visiontasks import get_model
from visiontasks.banded_stem import (BAND_BYTES, BandedSequential, applies, banded_forward, plan,
                                     select_banded_stems, stem_forward, stem_length)


@pytest.fixture(scope="module")
def vgg_body() -> nn.Sequential:
    torch.manual_seed(0)
    return get_model("vgg16").body.eval().to(torch.bfloat16)


def _input(shape: tuple[int, ...], channels_last: bool, seed: int = 0) -> torch.Tensor:
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed)).bfloat16()
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@pytest.mark.parametrize("shape", [(1, 3, 64, 80), (2, 3, 97, 131), (1, 3, 33, 40), (1, 3, 7, 9)])
@pytest.mark.parametrize("channels_last", [True, False])
def test_bands_equal_the_whole_block(vgg_body: nn.Sequential, shape: tuple[int, ...], channels_last: bool) -> None:
    layers = list(vgg_body)[:stem_length(vgg_body)]
    x = _input(shape, channels_last)
    with torch.inference_mode():
        whole = nn.Sequential(*layers)(x)
        rows = shape[2] // 2
        for bands in sorted({1, 2, 3, 5, rows}):
            if bands > rows:
                continue
            out = banded_forward(layers, x, bands)
            assert torch.equal(out, whole), bands
            assert out.is_contiguous(memory_format=torch.channels_last) == \
                whole.is_contiguous(memory_format=torch.channels_last)


def test_the_body_at_600x800_runs_in_bands_and_equals_the_sequential(vgg_body: nn.Sequential) -> None:
    plain = copy.deepcopy(vgg_body)
    banded = copy.deepcopy(vgg_body)
    assert select_banded_stems(banded) == 1 and type(banded) is BandedSequential
    x = _input((1, 3, 608, 800), channels_last=True)
    layers = list(banded)[:5]
    assert plan(layers, x) == (1, 4)  # 64 × 608 × 800 × 2 bytes = 62 MB → 16 MB bands
    calls = []
    banded[0].register_forward_hook(lambda m, i, o: calls.append(tuple(i[0].shape)))
    with torch.inference_mode():
        assert torch.equal(banded(x), plain(x))
    assert len(calls) == 4 and sum(c[2] for c in calls) == 608 + 2 * 3 * 2  # each inner edge: 2 halo rows each side


def test_stem_length_finds_only_the_bandable_block() -> None:
    conv = lambda **kw: nn.Conv2d(3, 8, 3, **{"padding": 1, **kw})  # noqa: E731
    pool = nn.MaxPool2d(2, 2)
    assert stem_length(nn.Sequential(conv(), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), pool, conv())) == 5
    assert stem_length(nn.Sequential(conv(), pool)) == 2
    assert stem_length(nn.Sequential(conv(padding=100), nn.ReLU(), pool)) == 0  # FCN's conv1_1
    assert stem_length(nn.Sequential(conv(), nn.BatchNorm2d(8), nn.ReLU(), pool)) == 0  # DeconvNet's
    assert stem_length(nn.Sequential(conv(stride=2), pool)) == 0
    assert stem_length(nn.Sequential(conv(dilation=2, padding=2), pool)) == 0
    assert stem_length(nn.Sequential(nn.ReLU(), pool)) == 0  # no convolution
    assert stem_length(nn.Sequential(conv(), nn.MaxPool2d(2, 2, ceil_mode=True))) == 0
    assert stem_length(nn.Sequential(conv(), nn.MaxPool2d(3, 2))) == 0
    assert stem_length(nn.Sequential(conv(), nn.ReLU())) == 0  # no pool
    assert stem_length(get_model("vgg16").body) == 5
    assert select_banded_stems(get_model("fcn8s")) == 0
    assert select_banded_stems(get_model("deconvnet")) == 0


def test_plan_chunks_samples_first_and_bands_a_sample_too_large_alone(vgg_body: nn.Sequential) -> None:
    layers = list(vgg_body)[:5]
    shape = lambda n, h, w: torch.empty(n, 3, h, w)  # noqa: E731
    assert plan(layers, shape(1, 400, 400)) == (1, 1)  # 20 MB: under glibc's mmap threshold, whole
    assert plan(layers, shape(1, 608, 800)) == (1, 4)
    assert plan(layers, shape(2, 608, 800)) == (1, 4)  # a training batch of two: each image in 4 bands
    assert plan(layers, shape(1, 2000, 2000)) == (1, -(-64 * 2000 * 2000 * 2 // BAND_BYTES))
    assert plan(layers, shape(1, 64, 40000)) == (1, 64 // 2 // 8)  # at least 8 output rows a band
    assert plan(layers, shape(128, 224, 224)) == (2, 1)  # R-CNN's warped regions: 6.4 MB each, 2 a chunk
    assert plan(layers, shape(4, 224, 224)) == (4, 1)  # 26 MB in all: whole


def test_chunks_of_samples_equal_the_whole_block(vgg_body: nn.Sequential) -> None:
    """R-CNN's batches of warped regions: the block per chunk of samples (no halo), bit for bit."""
    layers = list(vgg_body)[:5]
    x = _input((7, 3, 40, 36), channels_last=True)
    with torch.inference_mode():
        whole = nn.Sequential(*layers)(x)
        for samples, bands in ((1, 1), (2, 1), (3, 2), (7, 1), (4, 3)):
            out = stem_forward(layers, x, samples, bands)
            assert torch.equal(out, whole), (samples, bands)
            assert out.is_contiguous(memory_format=torch.channels_last)
    banded = copy.deepcopy(vgg_body)
    select_banded_stems(banded)
    calls = []
    banded[0].register_forward_hook(lambda m, i, o: calls.append(tuple(i[0].shape)))
    x = _input((6, 3, 224, 224), channels_last=True)  # 6 × 6.4 MB: chunks of 2
    with torch.inference_mode():
        assert torch.equal(banded(x), vgg_body(x))
    assert calls == [(2, 3, 224, 224)] * 3


def test_applies_only_without_gradients_in_bf16_on_the_cpu(vgg_body: nn.Sequential) -> None:
    body = copy.deepcopy(vgg_body)
    x = torch.empty(1, 3, 32, 32, dtype=torch.bfloat16)
    with torch.inference_mode():
        assert applies(body, x)
        assert not applies(body, x.float())  # fp32: NNPACK's Winograd tiles depend on the map's origin
    with torch.no_grad():
        assert applies(body, x)
    with torch.autocast("cpu", torch.bfloat16):
        assert applies(body, x.float()) and applies(body, x)  # VGG16 detectors freeze conv1 in training
        for p in body[:5].parameters():
            p.requires_grad_(True)
        assert not applies(body, x.float())  # grad enabled and the stem's weights need gradients
        for p in body[:5].parameters():
            p.requires_grad_(False)
        assert not applies(body, x.float().requires_grad_())
    assert not applies(nn.Sequential(nn.ReLU()), x)
    assert not applies(body, torch.empty(3, 32, 32, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="bands must be in"):
        banded_forward(list(body)[:5], x, 17)


def test_the_trainer_and_load_model_re_class_vgg16_bodies(tmp_path) -> None:
    from visiontasks.conv_select import inference_layout
    from visiontasks.engine.trainer import Trainer

    model = get_model("faster_rcnn", backbone="vgg16", num_classes=3)
    Trainer(model, [], lambda b: b, str(tmp_path), max_iters=1, amp="none", device="cpu")
    assert type(model.backbone.body) is BandedSequential
    other = inference_layout(get_model("faster_rcnn", backbone="vgg16", num_classes=3).eval())
    assert type(other.backbone.body) is BandedSequential
    assert model.state_dict().keys() == other.state_dict().keys()
