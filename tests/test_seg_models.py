"""Segmentation models: shapes for any H×W, parameter counts from layer shapes, bilinear upsampling,
crop offsets from coordinate maps, unpooling switches, context-module identity init, init_from.

Architecture-level checks build the models on the meta device (no memory, no compute).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from visiontasks import get_model, list_models
from visiontasks.config import load_config
from visiontasks.errors import InputError
from visiontasks.segmentation.common import load_matching_weights, reflect_pad
from visiontasks.segmentation.context import ContextModule
from visiontasks.segmentation.dilated import REFLECT_PAD
from visiontasks.segmentation.fcn import FCN, FCN_CROP_OFFSETS
from visiontasks.segmentation.upsample import bilinear_kernel, bilinear_upsampler

K = 21
SEG_MODELS = ("fcn32s", "fcn16s", "fcn8s", "deconvnet", "dilated_frontend", "dilated_context")
CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "segmentation"
VGG16_WIDTHS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


def meta_model(name: str, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return get_model(name, num_classes=K, **kwargs).eval()


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def conv(cin: int, cout: int, k: int, bias: bool = True) -> int:
    return cin * cout * k * k + (cout if bias else 0)


def vgg16_convs() -> int:
    total, cin = 0, 3
    for stage in VGG16_WIDTHS:
        for cout in stage:
            total, cin = total + conv(cin, cout, 3), cout
    return total


FC67 = conv(512, 4096, 7) + conv(4096, 4096, 1)


def test_registered():
    assert set(SEG_MODELS) <= set(list_models("segmentation"))


@pytest.mark.parametrize("name,kwargs", [(n, {}) for n in SEG_MODELS] + [("dilated_frontend", {"padding": "zero"}),
                                                                         ("dilated_context", {"context": "basic"})])
def test_output_size_equals_input_size(name, kwargs):
    model = meta_model(name, **kwargs)
    for h, w in [(1, 1), (7, 13), (37, 53), (100, 75), (333, 500), (375, 500), (226, 1)]:
        out = model(torch.empty(2, 3, h, w, device="meta"))["out"]
        assert out.shape == (2, K, h, w), (name, h, w)


def test_fcn_parameter_counts():
    up = lambda f: K * K * (2 * f) ** 2  # noqa: E731  bias-free bilinear deconvolution
    body = vgg16_convs() + FC67 + conv(4096, K, 1)
    assert n_params(meta_model("fcn32s")) == body + up(32)
    assert n_params(meta_model("fcn16s")) == body + conv(512, K, 1) + up(2) + up(16)
    n8 = n_params(meta_model("fcn8s"))
    assert n8 == body + conv(512, K, 1) + conv(256, K, 1) + 2 * up(2) + up(8)
    assert 134e6 < n8 < 135e6  # the Caffe reference FCN-8s: ~134M


def test_fcn_trainable_layers_follow_the_released_code_or_the_paper():
    released = meta_model("fcn8s")  # default: voc-fcn8s/net.py, lr_mult 0 on all three deconvolutions
    assert not any(m.weight.requires_grad for m in (released.upscore2, released.upscore_pool4, released.upscore8))
    paper = meta_model("fcn8s", learn_upsampling=True)
    assert not paper.upscore8.weight.requires_grad  # final upsampling fixed to bilinear in both
    assert paper.upscore2.weight.requires_grad and paper.upscore_pool4.weight.requires_grad


def test_deconvnet_parameter_count():
    bn = lambda c: 2 * c  # noqa: E731
    encoder = vgg16_convs() + sum(bn(c) for stage in VGG16_WIDTHS for c in stage)
    centre = FC67 + 2 * bn(4096) + conv(4096, 512, 7) + bn(512)
    decoder, cin = 0, 512
    for stage in ((512, 512, 512), (512, 512, 256), (256, 256, 128), (128, 64), (64, 64)):
        for cout in stage:
            decoder, cin = decoder + conv(cin, cout, 3) + bn(cout), cout
    n = n_params(meta_model("deconvnet"))
    assert n == encoder + centre + decoder + conv(64, K, 1)
    assert abs(n - 252e6) / 252e6 < 0.01  # the paper: ~252M


def test_dilated_parameter_counts():
    frontend = vgg16_convs() + FC67 + conv(4096, K, 1)
    assert n_params(meta_model("dilated_frontend")) == frontend
    basic = 7 * conv(K, K, 3) + conv(K, K, 1)
    widths = [K, 2 * K, 2 * K, 4 * K, 8 * K, 16 * K, 32 * K, 32 * K]
    large = sum(conv(a, b, 3) for a, b in zip(widths, widths[1:])) + conv(32 * K, K, 1)
    assert n_params(meta_model("dilated_context", context="basic")) == frontend + basic
    assert n_params(meta_model("dilated_context", context="large")) == frontend + large


def _coord_map(layers) -> tuple[float, float]:
    """(A, B) with input pixel = A · x + B for cell x of the last layer (Caffe's coord_map, naively)."""
    a, b = 1.0, 0.0
    for layer in layers:
        if not hasattr(layer, "kernel_size"):
            continue  # ReLU / dropout
        pair = lambda v: v[0] if isinstance(v, tuple) else v  # noqa: E731
        k, s, p, d = (pair(getattr(layer, n, 1)) for n in ("kernel_size", "stride", "padding", "dilation"))
        c = (k - 1) * d / 2 - p
        if isinstance(layer, nn.ConvTranspose2d):  # x_out = s · x_in + c
            a, b = a / s, b - a * c / s
        else:  # x_in = s · x_out + c
            a, b = a * s, a * c + b
    return a, b


def test_fcn_crop_offsets_follow_from_coordinate_maps():
    # The reference prototxts' Crop offsets (voc-fcn32s/16s/8s).
    assert FCN_CROP_OFFSETS == {"pool4": 5, "pool3": 9, "32s": 19, "16s": 27, "8s": 31}
    m32, m16, m8 = (meta_model(n) for n in ("fcn32s", "fcn16s", "fcn8s"))
    body = lambda m: [*m.to_pool3, *m.to_pool4, *m.to_pool5, *m.fc, m.score_fr]  # noqa: E731
    assert _coord_map(body(m32) + [m32.upscore32]) == (1.0, -19)
    pool4 = _coord_map([*m8.to_pool3, *m8.to_pool4, m8.score_pool4])
    up2 = _coord_map(body(m8) + [m8.upscore2])
    assert pool4[0] == up2[0] == 16 and (up2[1] - pool4[1]) / 16 == 5
    assert _coord_map(body(m16) + [m16.upscore2, m16.upscore16]) == (1.0, -27)
    pool3 = _coord_map([*m8.to_pool3, m8.score_pool3])
    up4 = _coord_map(body(m8) + [m8.upscore2, m8.upscore_pool4])
    assert pool3[0] == up4[0] == 8 and (up4[1] - pool3[1]) / 8 == 9
    assert _coord_map(body(m8) + [m8.upscore2, m8.upscore_pool4, m8.upscore8]) == (1.0, -31)


@pytest.mark.parametrize("padding", ["reflect", "zero"])
def test_dilated_cells_centred_on_their_8x8_blocks(padding):
    model = meta_model("dilated_frontend", padding=padding)
    a, b = _coord_map([*model.features, *model.fc, model.final])
    shift = REFLECT_PAD[0] if padding == "reflect" else 0
    assert (a, b - shift) == (8, 3.5)  # where F.interpolate(align_corners=False) puts cell centres
    if padding == "reflect":
        assert sum(REFLECT_PAD) == 372  # the reference's 2 × 186 margin


def test_bilinear_kernel_taps():
    w = bilinear_kernel(3, 4)
    taps = torch.tensor([0.25, 0.75, 0.75, 0.25])
    for c in range(3):
        torch.testing.assert_close(w[c, c], taps[:, None] * taps[None, :])
    assert w[0, 1].abs().sum() == 0 and w[2, 0].abs().sum() == 0
    taps6 = torch.tensor([1, 3, 5, 5, 3, 1]) / 6  # factor 3: 1 - |t - 2.5| / 3
    torch.testing.assert_close(bilinear_kernel(1, 6)[0, 0], taps6[:, None] * taps6[None, :])


@pytest.mark.parametrize("factor", [2, 8, 16])
def test_bilinear_upsampler_matches_interpolate_in_interior(factor):
    torch.manual_seed(0)
    x = torch.randn(1, 3, 5, 7)
    layer = bilinear_upsampler(3, factor, learnable=True)
    assert layer.weight.requires_grad and not bilinear_upsampler(3, factor, learnable=False).weight.requires_grad
    with torch.no_grad():
        up = layer(x)[..., factor // 2:, factor // 2:][..., : 5 * factor, : 7 * factor]
    ref = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    lo = factor // 2  # interior: both interpolate between two real pixels (no clamping, no implicit zeros)
    rows, cols = slice(lo, 4 * factor + lo), slice(lo, 6 * factor + lo)
    torch.testing.assert_close(up[..., rows, cols], ref[..., rows, cols])
    assert not torch.allclose(up[..., 0, 0], ref[..., 0, 0])  # the borders do differ (zeros outside)


def test_reflect_pad_matches_numpy():
    x = torch.arange(2 * 5 * 4, dtype=torch.float32).view(1, 2, 5, 4)
    for pads in [(0, 0, 0, 0), (1, 2, 3, 0), (4, 4, 3, 3), (13, 9, 8, 11)]:
        t, bt, lf, r = pads
        ref = np.pad(x.numpy(), ((0, 0), (0, 0), (t, bt), (lf, r)), mode="reflect")
        np.testing.assert_array_equal(reflect_pad(x, *pads).numpy(), ref)
    one = torch.tensor([[[[3.0]]]])
    assert reflect_pad(one, 2, 1, 0, 3).eq(3).all() and reflect_pad(one, 2, 1, 0, 3).shape == (1, 1, 4, 4)


def test_unpooling_puts_values_at_the_switches():
    model = meta_model("deconvnet")
    pool, unpool = model.pools[0], model.unpools[0]
    x = torch.tensor([[1., 2., 0., 0., 8.], [3., 4., 0., 9., 8.], [5., 0., 1., 1., 8.], [0., 6., 1., 7., 8.],
                      [8., 8., 8., 8., 8.]]).view(1, 1, 5, 5)
    pooled, switches = pool(x)
    assert pooled.flatten().tolist() == [4, 9, 6, 7]
    out = unpool(torch.tensor([[[[10., 20.], [30., 40.]]]]), switches, output_size=x.shape[-2:])
    expected = torch.zeros(5, 5)
    expected[1, 1], expected[1, 3], expected[3, 1], expected[3, 3] = 10, 20, 30, 40
    assert torch.equal(out[0, 0], expected)


@pytest.mark.parametrize("kind,noise", [("basic", 1e-3), ("large", 0.0)])
def test_context_module_is_the_identity_at_init(kind, noise):
    torch.manual_seed(0)
    module = ContextModule(5, kind, init_noise=noise)  # the basic module ignores the noise (eq. 4)
    x = torch.randn(2, 5, 20, 24) * 3
    with torch.no_grad():
        torch.testing.assert_close(module(x.abs()), x.abs(), atol=1e-5, rtol=1e-5)
        # Signed input: the paper's truncations max(·, 0) after layers 1-7 clip the negative part.
        torch.testing.assert_close(module(x), x.clamp(min=0), atol=1e-5, rtol=1e-5)


def test_large_context_module_with_eq5_noise_is_near_identity():
    torch.manual_seed(0)
    module = ContextModule(5, "large", init_noise=1e-3)
    x = torch.rand(2, 5, 20, 24) * 3
    with torch.no_grad():
        err = (module(x) - x).norm() / x.norm()
    assert 0 < err < 0.01  # noise σ = 1e-3 · C / c breaks the symmetry but keeps the identity


@pytest.mark.parametrize("call", [
    lambda: get_model("fcn8s", num_classes=1), lambda: FCN(variant="32s", at_once=True), lambda: FCN(variant="4s"),
    lambda: get_model("dilated_frontend", padding="same"), lambda: ContextModule(4, "huge"),
    lambda: reflect_pad(torch.zeros(1, 1, 2, 2), -1, 0, 0, 0),
])
def test_bad_arguments_raise_value_error(call):
    with torch.device("meta"), pytest.raises(ValueError):
        call()


@pytest.fixture(scope="module")
def fcn32s_file(tmp_path_factory):
    torch.manual_seed(0)
    model = get_model("fcn32s", num_classes=K)
    with torch.no_grad():
        model.score_fr.weight.normal_()  # non-zero, so a copy is distinguishable from the zero init
    path = tmp_path_factory.mktemp("ckpt") / "fcn32s.pt"
    torch.save({"model": model.state_dict(), "iteration": 7}, path)  # a Trainer-style checkpoint
    return path, model.state_dict()


@pytest.fixture(scope="module")
def fcn16s_from_32s(fcn32s_file):
    return get_model("fcn16s", num_classes=K, init_from=str(fcn32s_file[0]))


def test_init_from_copies_the_shared_weights(fcn32s_file, fcn16s_from_32s):
    state32 = fcn32s_file[1]
    state16 = fcn16s_from_32s.state_dict()
    shared = set(state32) & set(state16)
    assert {"to_pool3.0.weight", "fc.0.weight", "fc.3.bias", "score_fr.weight"} <= shared
    for name in shared:
        assert torch.equal(state16[name], state32[name]), name
    assert state16["score_pool4.weight"].abs().sum() == 0  # new layers keep their initialisation
    torch.testing.assert_close(state16["upscore2.weight"], bilinear_kernel(K, 4))


def test_at_once_scales_the_pool4_skip(fcn16s_from_32s):
    model = fcn16s_from_32s
    torch.manual_seed(0)
    feature, like = torch.randn(1, 512, 12, 12), torch.empty(1, K, 4, 4)
    score = nn.Conv2d(512, K, 1)  # a non-zero stand-in for score_pool4 (the fixture stays untouched)
    saved, model.score_pool4 = model.score_pool4, score
    try:
        with torch.no_grad():
            staged = model._skip("pool4", feature, like)
            model.at_once = True
            at_once = model._skip("pool4", feature, like)
            expected = score(feature * 0.01)[..., 5:9, 5:9]  # crop offset 5
    finally:
        model.score_pool4, model.at_once = saved, False
    torch.testing.assert_close(at_once, expected)
    assert staged.shape == (1, K, 4, 4) and not torch.allclose(staged, at_once, atol=1e-3)


def test_init_from_bad_files_raise_input_error(fcn32s_file, tmp_path):
    path = fcn32s_file[0]
    with torch.device("meta"):
        model = get_model("fcn32s", num_classes=K)
    with pytest.raises(InputError, match="missing.pt"):
        load_matching_weights(model, tmp_path / "missing.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00not a torch file" * 10)
    with pytest.raises(InputError, match="corrupt.pt"):
        load_matching_weights(model, corrupt)
    unrelated = tmp_path / "unrelated.pt"
    torch.save({"something.weight": torch.zeros(2)}, unrelated)
    with pytest.raises(InputError, match="shares no weight"):
        load_matching_weights(model, unrelated)
    with torch.device("meta"):
        other = get_model("fcn32s", num_classes=5)
    with pytest.raises(InputError, match="score_fr.weight.*shape"):
        load_matching_weights(other, path)


@pytest.mark.parametrize("name", SEG_MODELS)
def test_config_loads_and_builds(name):
    cfg = load_config(CONFIGS / f"{name}_vgg16_voc.yaml")
    assert cfg["task"] == "segmentation" and cfg["data"]["dataset"] == "voc" and cfg["data"]["root"] is None
    assert (cfg["data"]["train_split"], cfg["data"]["test_split"]) == ("train", "val")
    kwargs = {k: v for k, v in cfg["model"].items() if k != "name"}
    kwargs["pretrained_backbone"] = False  # no ImageNet file needed to check the kwargs
    with torch.device("meta"):
        model = get_model(cfg["model"]["name"], **kwargs).eval()
    assert model(torch.empty(1, 3, 50, 70, device="meta"))["out"].shape == (1, 21, 50, 70)


def test_fcn_configs_use_the_normalised_heavy_learning_rates():
    pixels = 500 * 375  # a typical VOC image: summed loss lr x pixels = mean loss lr
    for stage, summed_lr in (("fcn32s", 1e-10), ("fcn16s", 1e-12), ("fcn8s", 1e-14)):
        train = load_config(CONFIGS / f"{stage}_vgg16_voc.yaml")["train"]
        assert train["lr"] == pytest.approx(summed_lr * pixels, rel=0.02)
        assert train["momentum"] == 0.99 and train["batch_size"] == 1
        assert train["weight_decay"] == pytest.approx(5e-4 / pixels, rel=0.02)
