"""SPP-net's window projection (appendix) against receptive-field centres measured on the real layers.

The centres are not taken from the library: each torchvision layer's kernel, stride, padding and
dilation are copied into a one-channel stack of all-ones convolutions and average pools (a max
pool's gradient reaches one input only), and the support of each feature cell is read off the
input gradient. Its middle is the cell's receptive-field centre.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torchvision

from visiontasks.detection import SpatialPyramidPool, project_windows
from visiontasks.detection.receptive_field import projection_offset, receptive_field


def _one_channel_copy(layers: nn.Sequential) -> nn.Sequential:
    out = []
    for m in layers:
        if isinstance(m, nn.Conv2d):
            conv = nn.Conv2d(1, 1, m.kernel_size, m.stride, m.padding, m.dilation, bias=False)
            nn.init.ones_(conv.weight)
            out.append(conv)
        elif isinstance(m, nn.MaxPool2d):
            out.append(nn.AvgPool2d(m.kernel_size, m.stride, m.padding, ceil_mode=m.ceil_mode))
    return nn.Sequential(*out)


def _measured_centres(layers: nn.Sequential, size: int) -> dict[int, float]:
    """Cell index -> centre (pixel index) of its support along x, for cells whose support is inside."""
    net = _one_channel_copy(layers).double()
    x = torch.ones(1, 1, size, size, dtype=torch.float64, requires_grad=True)
    out = net(x)
    centres = {}
    for i in range(out.shape[-1]):
        (grad,) = torch.autograd.grad(out[0, 0, out.shape[-2] // 2, i], x, retain_graph=True)
        cols = torch.nonzero(grad[0, 0].abs().sum(0) > 0).squeeze(1)
        first, last = int(cols[0]), int(cols[-1])
        if first > 0 and last < size - 1:  # support not cut by the image border
            centres[i] = (first + last) / 2
    return centres


NETS = {
    "alexnet": lambda: torchvision.models.alexnet(weights=None).features[:12],  # conv5 + ReLU, no pool5
    "vgg16": lambda: torchvision.models.vgg16(weights=None).features[:30],      # conv5_3 + ReLU, no pool5
}


@pytest.fixture(scope="module")
def measured():
    out = {}
    for name, make in NETS.items():
        centres = _measured_centres(make(), 480)
        cells = sorted(centres)
        stride = (centres[cells[-1]] - centres[cells[0]]) / (cells[-1] - cells[0])
        out[name] = (centres, stride, centres[cells[0]] - stride * cells[0])
    return out


def test_measured_centres_are_an_arithmetic_sequence_matching_the_derived_geometry(measured):
    for name, (centres, stride, offset) in measured.items():
        assert len(centres) >= 8
        for i, c in centres.items():
            assert c == pytest.approx(stride * i + offset)
        rf = receptive_field(NETS[name]())
        assert (rf.stride, rf.offset) == (pytest.approx(stride), pytest.approx(offset))
    # the hand figures: 16 i + 15 (AlexNet conv5), 16 i + 7.5 (VGG16 conv5_3)
    assert measured["alexnet"][1:] == (16.0, 15.0)
    assert measured["vgg16"][1:] == (16.0, 7.5)


@pytest.mark.parametrize("name", list(NETS))
def test_projection_puts_each_edge_at_the_nearest_inner_centre(measured, name):
    _, stride, offset = measured[name]
    centre = lambda i: stride * i + offset  # noqa: E731 — the measured line, extended to every cell
    g = torch.Generator().manual_seed(3)
    x0 = torch.rand(200, generator=g, dtype=torch.float64) * 300
    w = 40 + torch.rand(200, generator=g, dtype=torch.float64) * 300
    boxes = torch.stack((x0, x0 + 7, x0 + w, x0 + 7 + w), dim=1)
    cells = project_windows(boxes, stride, (1000, 1000), offset)
    for box, cell in zip(boxes.tolist(), cells.tolist()):
        for edge, lo, hi in ((0, 0, 2), (1, 1, 3)):
            left, right = box[lo], box[hi]
            a, b = int(cell[lo]), int(cell[hi])
            # left/top: the first cell whose centre lies right of the edge; right/bottom: the last left of it
            assert centre(a - 1) <= left < centre(a)
            assert centre(b) < right <= centre(b + 1)


def test_the_backbone_offset_moves_pooling_onto_the_window():
    # AlexNet geometry: cell 12 is centred at 16·12 + 15 = 207. A 20-px window around that centre
    # pools cell 12 with the offset: x0 = floor((197 − 15)/16) + 1 = 12, x1 = ceil((217 − 15)/16) − 1 = 12;
    # without it, floor(197/16) + 1 = 13 and ceil(217/16) − 1 = 13: one cell right (and below).
    feats = torch.zeros(1, 1, 30, 30)
    feats[0, 0, 12, 12] = 1.0
    window = [torch.tensor([[197.0, 197.0, 217.0, 217.0]])]
    with_offset = SpatialPyramidPool((1,), 1 / 16, offset=15.0)(feats, window)
    without = SpatialPyramidPool((1,), 1 / 16)(feats, window)
    assert with_offset.item() == 1.0 and without.item() == 0.0


def test_spp_net_builds_its_pooler_with_the_backbone_offset():
    from visiontasks.backbones import build_backbone
    from visiontasks.detection import spp_net

    assert spp_net(backbone="alexnet").roi_head.pooler.spp.offset == 15.0
    assert projection_offset(build_backbone("alexnet", False, None)) == 15.0
    assert projection_offset(build_backbone("vgg16", False, None)) == 7.5
    assert projection_offset(build_backbone("small", False, None)) == 0.0  # 3×3 convs, padding 1: the paper's rule
    with pytest.raises(ValueError, match="Bottleneck|FrozenBatchNorm|cannot derive"):
        receptive_field(build_backbone("resnet50", False, None))
