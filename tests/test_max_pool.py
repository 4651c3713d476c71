"""2×2 max pooling as two element-wise maxima (visiontasks/max_pool.py): the same tensors as
``F.max_pool2d``, the rule that decides where it runs, and the models and Trainer that take it."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from visiontasks import get_model
from visiontasks.max_pool import PairwiseMaxPool2d, applies, max_pool_2x2, qualifies, select_pool_kernels

CHANNELS_LAST = torch.channels_last


def _input(shape, dtype=torch.float32, channels_last=False, seed=0) -> torch.Tensor:
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(dtype)
    return x.contiguous(memory_format=CHANNELS_LAST) if channels_last else x


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("shape", [(2, 3, 8, 10), (1, 4, 7, 9), (1, 2, 2, 2), (3, 5, 6, 3)])
def test_same_tensor_as_max_pool2d(dtype, channels_last, shape) -> None:
    x = _input(shape, dtype, channels_last)
    ref, got = F.max_pool2d(x, 2, 2), max_pool_2x2(x)
    assert got.dtype == ref.dtype and got.shape == ref.shape  # odd sizes: floor mode drops the last row / column
    assert torch.equal(got, ref)
    assert got.is_contiguous(memory_format=CHANNELS_LAST if channels_last else torch.contiguous_format)


def test_ties_nan_and_infinities_as_pytorch() -> None:
    x = torch.tensor([[[[1.0, 1.0, float("nan"), 0.0],
                        [1.0, 0.5, 2.0, 3.0],
                        [-float("inf"), -float("inf"), float("inf"), float("nan")],
                        [-float("inf"), -float("inf"), 1.0, 2.0]]]])
    got = max_pool_2x2(x)
    # hand-computed: max 1 (ties), NaN propagates, all -inf stays -inf, NaN beats +inf
    expected = torch.tensor([[[[1.0, float("nan")], [-float("inf"), float("nan")]]]])
    torch.testing.assert_close(got, expected, rtol=0, atol=0, equal_nan=True)
    torch.testing.assert_close(got, F.max_pool2d(x, 2, 2), rtol=0, atol=0, equal_nan=True)
    for signs in range(16):  # windows of +0 / -0: the same zero's sign as PyTorch's kernel keeps
        zeros = torch.tensor([-0.0 if signs >> k & 1 else 0.0 for k in range(4)]).view(1, 1, 2, 2)
        assert torch.signbit(max_pool_2x2(zeros)) == torch.signbit(F.max_pool2d(zeros, 2, 2))


@pytest.mark.parametrize("pool, ok", [
    (nn.MaxPool2d(2), True), (nn.MaxPool2d(2, 2), True), (nn.MaxPool2d((2, 2), (2, 2), 0, 1), True),
    (nn.MaxPool2d(2, 2, ceil_mode=True), True), (nn.MaxPool2d(2, 1), False), (nn.MaxPool2d(3, 2), False),
    (nn.MaxPool2d(2, 2, padding=1), False), (nn.MaxPool2d(2, 2, dilation=2), False),
    (nn.MaxPool2d(2, 2, return_indices=True), False), (nn.AvgPool2d(2), False), (nn.MaxPool2d((2, 1), 2), False),
])
def test_which_pools_qualify(pool, ok) -> None:
    assert qualifies(pool) is ok


def test_where_it_applies() -> None:
    pool = nn.MaxPool2d(2, 2)
    assert applies(pool, _input((1, 4, 8, 8)))  # fp32 NCHW
    assert applies(pool, _input((1, 4, 8, 8), torch.bfloat16, channels_last=True))
    assert applies(pool, _input((1, 4, 8, 8), torch.bfloat16))
    assert not applies(pool, _input((1, 4, 8, 8), channels_last=True))  # fp32 channels-last: no gain measured
    assert not applies(pool, _input((4, 8, 8)))  # unbatched
    assert not applies(pool, torch.zeros(1, 4, 8, 8, dtype=torch.uint8))
    assert not applies(pool, _input((1, 4, 1, 8)))  # under 2×2: PyTorch raises
    assert not applies(pool, _input((0, 4, 8, 8)))
    assert not applies(nn.MaxPool2d(2, 2, ceil_mode=True), _input((1, 4, 7, 8)))  # ceil pools the odd row
    assert applies(nn.MaxPool2d(2, 2, ceil_mode=True), _input((1, 4, 6, 8)))
    needs_grad = _input((1, 4, 8, 8)).requires_grad_(True)
    assert not applies(pool, needs_grad)  # PyTorch's indices route the gradient
    with torch.no_grad():
        assert applies(pool, needs_grad)


def test_module_gradient_is_pytorchs_where_one_is_needed() -> None:
    x = _input((2, 3, 8, 10)).round()  # many ties: maxima would split their gradient
    ours, ref = nn.Sequential(nn.MaxPool2d(2, 2)), nn.MaxPool2d(2, 2)
    assert select_pool_kernels(ours) == 1 and type(ours[0]) is PairwiseMaxPool2d
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    grad = _input((2, 3, 4, 5), seed=1)
    ours(a).backward(grad)
    ref(b).backward(grad)
    assert torch.equal(a.grad, b.grad)
    with torch.no_grad():  # and where none is, the maxima: the same forward values
        assert torch.equal(ours(a), ref(b))


def test_too_small_map_raises_pytorchs_error() -> None:
    x = _input((1, 2, 1, 5))
    with pytest.raises(RuntimeError) as ours:
        PairwiseMaxPool2d(2, 2)(x)
    with pytest.raises(RuntimeError) as theirs:
        nn.MaxPool2d(2, 2)(x)
    assert str(ours.value) == str(theirs.value)


def test_tracing_keeps_max_pool2d() -> None:
    pool = PairwiseMaxPool2d(2, 2)
    traced = torch.jit.trace(pool, _input((1, 2, 8, 8)))
    kinds = {node.kind() for node in traced.graph.nodes()}
    assert "aten::max_pool2d" in kinds and "aten::maximum" not in kinds


@pytest.mark.parametrize("name, count", [("vgg16", 4), ("darknet24", 4), ("fcn8s", 5), ("deconvnet", 0),
                                         ("alexnet", 0), ("resnet18", 0)])
def test_models_pools_reclassed(name, count) -> None:
    model = get_model(name)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert select_pool_kernels(model) == count
    assert select_pool_kernels(model) == 0  # idempotent
    assert sum(isinstance(m, PairwiseMaxPool2d) for m in model.modules()) == count
    assert state.keys() == model.state_dict().keys()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())


@pytest.mark.parametrize("dtype, channels_last", [(torch.float32, False), (torch.bfloat16, True)])
def test_vgg16_body_output_unchanged(dtype, channels_last) -> None:
    body = get_model("vgg16").eval().to(dtype)
    if channels_last:
        body = body.to(memory_format=CHANNELS_LAST)
    x = _input((1, 3, 96, 128), dtype, channels_last)
    with torch.inference_mode():
        ref = body(x)
        select_pool_kernels(body)
        got = body(x)
    assert torch.equal(got, ref)


def test_load_model_and_trainer_take_it(tmp_path) -> None:
    from visiontasks.conv_select import inference_layout
    from visiontasks.engine.trainer import Trainer

    model = inference_layout(get_model("vgg16"))
    assert sum(isinstance(m, PairwiseMaxPool2d) for m in model.modules()) == 4

    class Maps(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 2

        def __getitem__(self, i: int):
            x = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(i))
            return x, {"y": x.mean().reshape(1)}

    class Pooled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(2, 2), nn.Flatten())
            self.head = nn.Linear(4 * 16 * 16, 1)

        def forward(self, images, targets=None):
            pred = self.head(self.body(torch.stack(images)))
            return {"loss_mse": F.mse_loss(pred, torch.stack([t["y"] for t in targets]))}

    trainer = Trainer(Pooled(), Maps(), lambda b: ([x for x, _ in b], [t for _, t in b]), tmp_path / "run",
                      max_iters=1, batch_size=2, lr=0.01, log_every=1, num_workers=0, device="cpu", amp="none")
    assert type(trainer.model.body[1]) is PairwiseMaxPool2d
    before = trainer.model.body[0].weight.detach().clone()
    trainer.train()  # the pool's input needs a gradient here: PyTorch's kernel, and the conv still learns
    assert not torch.equal(before, trainer.model.body[0].weight)
