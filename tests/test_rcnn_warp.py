"""R-CNN's warped regions: context padding, anisotropic warp, mean fill, pool5, chunking, transform."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from visiontasks import get_model
from visiontasks.backbones.base import IMAGENET_MEAN, IMAGENET_STD
from visiontasks.detection.rcnn import WarpedRegionPooler, context_boxes, warp_regions


def _naive_warp(image: torch.Tensor, box: list[float], crop: int, pad: int) -> torch.Tensor:
    """Per-pixel reference: expand the box, sample each crop pixel's centre bilinearly, 0 outside."""
    _, h, w = image.shape
    x0, y0, x1, y1 = box
    s = crop / (crop - 2 * pad)
    cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2 * s, (y1 - y0) / 2 * s
    x0, x1, y0, y1 = cx - hw, cx + hw, cy - hh, cy + hh
    out = torch.zeros(3, crop, crop)
    for i in range(crop):
        v = y0 + (i + 0.5) * (y1 - y0) / crop
        for j in range(crop):
            u = x0 + (j + 0.5) * (x1 - x0) / crop
            if not (0 <= u <= w and 0 <= v <= h):
                continue
            x = min(max(u - 0.5, 0.0), w - 1)
            y = min(max(v - 0.5, 0.0), h - 1)
            xl, yl = math.floor(x), math.floor(y)
            xh, yh = min(xl + 1, w - 1), min(yl + 1, h - 1)
            ax, ay = x - xl, y - yl
            out[:, i, j] = ((1 - ay) * ((1 - ax) * image[:, yl, xl] + ax * image[:, yl, xh])
                            + ay * ((1 - ax) * image[:, yh, xl] + ax * image[:, yh, xh]))
    return out


def test_context_padding_maps_the_box_to_the_centre_of_the_crop():
    # crop 8, context 2: the box is doubled about its centre (8 / (8 - 4)), so it covers crop pixels 2..5
    boxes = context_boxes(torch.tensor([[2.0, 1.0, 6.0, 5.0]]), crop_size=8, context_pad=2)
    torch.testing.assert_close(boxes, torch.tensor([[0.0, -1.0, 8.0, 7.0]]))
    # R-CNN's 227 / 16: scale 227 / 195
    big = context_boxes(torch.tensor([[0.0, 0.0, 195.0, 390.0]]), 227, 16)
    torch.testing.assert_close(big, torch.tensor([[-16.0, -32.0, 211.0, 422.0]]))


def test_warp_on_pixel_centres_with_mean_rows_outside_the_image():
    # image value = x + 10 y on a 6 x 8 image; box (2, 1, 6, 5) with context 2 at crop 8 expands to
    # (0, -1, 8, 7): crop column j samples x = j + 0.5 (pixel j exactly), row i samples y = i - 0.5,
    # i.e. pixel row i - 1 for i = 1..6, and rows 0 and 7 lie outside the image (mean = 0).
    h, w = 6, 8
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    image = (xs + 10 * ys).expand(3, h, w)[None]
    crop = warp_regions(image, torch.tensor([[0.0, 2.0, 1.0, 6.0, 5.0]]), [(h, w)], crop_size=8, context_pad=2)[0]
    expected = torch.zeros(8, 8)
    for i in range(1, 7):
        expected[i] = torch.arange(8.0) + 10 * (i - 1)
    for c in range(3):
        torch.testing.assert_close(crop[c], expected)


def test_warp_matches_a_naive_bilinear_loop_for_a_fractional_box_leaving_the_image():
    torch.manual_seed(0)
    image = torch.randn(3, 7, 9)
    box = [1.3, -2.1, 10.7, 5.2]
    got = warp_regions(image[None], torch.tensor([[0.0, *box]]), [(7, 9)], crop_size=6, context_pad=1)[0]
    torch.testing.assert_close(got, _naive_warp(image, box, 6, 1), atol=1e-5, rtol=1e-5)
    assert (got[:, 0] == 0).all()  # the top rows lie above the image: mean fill


def test_batch_padding_is_never_sampled():
    torch.manual_seed(1)
    small, large = torch.randn(3, 5, 6), torch.randn(3, 9, 12)
    batch = torch.zeros(2, 3, 9, 12)
    batch[0, :, :5, :6] = small
    batch[1] = large
    batch[0, :, 5:, :] = 7.0  # padding holds garbage: it must not leak into the crop
    batch[0, :, :, 6:] = 7.0
    box = [2.0, 1.0, 9.0, 8.0]  # leaves the small image into the padding
    got = warp_regions(batch, torch.tensor([[0.0, *box]]), [(5, 6), (9, 12)], 8, 1)[0]
    torch.testing.assert_close(got, _naive_warp(small, box, 8, 1), atol=1e-5, rtol=1e-5)


def test_outside_the_image_the_crop_is_the_image_mean():
    # Through the model's own transform: outside pixels de-normalise to ImageNet's mean colour.
    model = get_model("rcnn", num_classes=3, backbone="small", crop_size=16, context_pad=4)
    colour = torch.tensor([0.9, 0.1, 0.3]).view(3, 1, 1)
    batch, _ = model.transform([colour.expand(3, 20, 30).clone()])
    crops = model.roi_head.pooler.warp(batch.tensors, torch.tensor([[0.0, 0.0, 0.0, 10.0, 10.0]]), batch.image_sizes)
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1), torch.tensor(IMAGENET_STD).view(3, 1)
    pixels = crops[0].reshape(3, -1) * std + mean
    outside = (crops[0] == 0).all(dim=0).reshape(-1)
    # the box (0, 0, 10, 10) expanded by 16/8 = 2 is (-5, -5, 15, 15): the first 4 rows/columns are outside
    assert outside.reshape(16, 16)[:4].all() and outside.reshape(16, 16)[:, :4].all()
    assert not outside.reshape(16, 16)[4:, 4:].any()
    torch.testing.assert_close(pixels[:, outside], mean.expand(3, int(outside.sum())))
    torch.testing.assert_close(pixels[:, ~outside], colour.view(3, 1).expand(3, int((~outside).sum())))


def test_the_detector_transform_does_not_resize():
    t = get_model("rcnn", num_classes=3, backbone="small").transform
    images = [torch.rand(3, 50, 70), torch.rand(3, 80, 40)]
    batch, targets = t(images, [{"boxes": torch.tensor([[1.0, 2, 3, 4]]), "labels": torch.tensor([1])}] * 2)
    assert batch.tensors.shape == (2, 3, 80, 70) and batch.image_sizes == [(50, 70), (80, 40)]
    assert targets[0]["boxes"].tolist() == [[1, 2, 3, 4]]
    assert t.scale_factors([(50, 70)], [(50, 70)]) == [1.0]
    torch.testing.assert_close(t.resize_proposals([torch.tensor([[1.0, 2, 3, 4]])], [(50, 70)], [(50, 70)])[0],
                               torch.tensor([[1.0, 2, 3, 4]]))


@pytest.mark.parametrize("conv, pool", [(13, (3, 2)), (14, (2, 2))])
def test_adaptive_pool5_equals_the_networks_own_pool5(conv, pool):
    # AlexNet at 227 (conv5 13x13, pool 3/2 -> 6x6) and VGG16 at 224 (conv5_3 14x14, pool 2/2 -> 7x7)
    x = torch.randn(2, 5, conv, conv)
    want = F.max_pool2d(x, pool[0], pool[1])
    torch.testing.assert_close(F.adaptive_max_pool2d(x, want.shape[-1]), want)


@pytest.mark.parametrize("backbone, crop, conv", [("alexnet", 227, 13), ("vgg16", 224, 14)])
def test_paper_crop_sizes_give_the_paper_conv5(backbone, crop, conv):
    with torch.device("meta"):  # shapes only: no weights initialised, nothing computed
        body = get_model(backbone)
        assert body(torch.zeros(1, 3, crop, crop)).shape[-2:] == (conv, conv)


def test_pooler_output_width_and_chunking():
    torch.manual_seed(0)
    body = get_model("small", width=8, head_dim=16).eval()
    images = torch.randn(2, 3, 40, 50)
    proposals = [torch.tensor([[0.0, 0.0, 20.0, 30.0], [5.0, 5.0, 45.0, 38.0]]), torch.tensor([[10.0, 3.0, 30.0, 9.0]])]
    sizes = [(40, 50), (30, 50)]
    one = WarpedRegionPooler(body, 32, 4, 7, chunk_size=1)
    many = WarpedRegionPooler(body, 32, 4, 7, chunk_size=100)
    with torch.no_grad():
        a, b = one(images, proposals, sizes), many(images, proposals, sizes)
    assert a.shape == (3, 32, 7, 7) and one.output_dim(32) == 32 * 49
    torch.testing.assert_close(a, b)
    with torch.no_grad():
        empty = many(images, [torch.zeros(0, 4), torch.zeros(0, 4)], sizes)
    assert empty.shape == (0, 32, 7, 7)
    with pytest.raises(ValueError, match="context_pad"):
        WarpedRegionPooler(body, 32, 16, 7)
