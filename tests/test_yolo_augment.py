"""YOLOv1's augmentation (visiontasks.detection.yolo.augment): boxes stay on the objects, HSV factors."""
from __future__ import annotations

import colorsys

import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from visiontasks.data.jitter import RandomHSV, RandomJitterCrop
from visiontasks.detection.yolo.augment import yolo_train_transforms


def scene():
    """A black 100×160 image with two white rectangles and their boxes (continuous xyxy)."""
    img = torch.zeros(3, 100, 160)
    boxes = torch.tensor([[20.0, 10, 60, 50], [100, 40, 150, 95]])
    for x0, y0, x1, y1 in boxes.int().tolist():
        img[:, y0:y1, x0:x1] = 1.0
    return (tv_tensors.Image(img),
            {"boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(100, 160)),
             "labels": torch.tensor([1, 2])})


def test_jitter_keeps_boxes_on_the_objects():
    torch.manual_seed(0)
    t = v2.Compose([RandomJitterCrop(0.2), v2.SanitizeBoundingBoxes()])
    sizes = set()
    for _ in range(30):
        img, target = t(*scene())
        h, w = img.shape[-2:]
        sizes.add((h, w))
        assert tuple(target["boxes"].canvas_size) == (h, w) and len(target["boxes"]) == len(target["labels"])
        assert 60 <= h <= 140 and 96 <= w <= 224  # each side moved by at most 20 %
        for box in target["boxes"]:
            x0, y0, x1, y1 = box.round().int().tolist()
            inside = img[0, y0:y1, x0:x1]
            assert inside.numel() > 0 and inside.min() == 1.0  # the box covers white pixels only
            # ... and all of the rectangle's visible pixels: a one-pixel ring around it holds no white
            ring = img[0, max(y0 - 1, 0):y1 + 1, max(x0 - 1, 0):x1 + 1].sum() - inside.sum()
            assert ring == 0
        assert (img[0] == 1.0).sum() == sum(int((b[2] - b[0]) * (b[3] - b[1])) for b in target["boxes"].round())
    assert len(sizes) > 20  # scaling and translation really vary


def test_jitter_zero_is_identity():
    img, target = scene()
    out, t = RandomJitterCrop(0.0)(img, target)
    assert torch.equal(out, img) and torch.equal(t["boxes"], target["boxes"])
    with pytest.raises(ValueError, match="jitter"):
        RandomJitterCrop(0.6)


def test_hsv_scales_saturation_and_value_keeps_hue():
    rgb = (0.6, 0.3, 0.15)
    img = torch.tensor(rgb).view(3, 1, 1)
    out = RandomHSV.apply(img, saturation=1.2, exposure=1 / 1.5).flatten().tolist()
    h0, s0, v0 = colorsys.rgb_to_hsv(*rgb)
    h1, s1, v1 = colorsys.rgb_to_hsv(*out)
    assert (h1, s1, v1) == pytest.approx((h0, s0 * 1.2, v0 / 1.5), abs=1e-6)
    # clipping: saturation above 1 clips the smallest channel at 0, exposure clips at 1
    out = RandomHSV.apply(img, saturation=2.0, exposure=2.0).flatten().tolist()
    assert out == pytest.approx([1.0, 0.0, 0.0])


def test_hsv_factors_and_pipeline():
    torch.manual_seed(0)
    t = RandomHSV(1.5, 1.5)
    factors = [t.make_params([])["saturation"] for _ in range(400)]
    assert min(factors) >= 1 / 1.5 - 1e-9 and max(factors) <= 1.5 + 1e-9
    assert 0.35 < sum(f < 1 for f in factors) / 400 < 0.65  # inverted half of the time
    img, target = scene()
    out_img, out_t = yolo_train_transforms()(img, target)
    assert isinstance(out_img, tv_tensors.Image) and isinstance(out_t["boxes"], tv_tensors.BoundingBoxes)
    assert out_img.min() >= 0 and out_img.max() <= 1
    assert torch.equal(out_t["labels"], target["labels"])


def test_config_keys_wire_the_augmentation_into_the_dataset(embedded_root, monkeypatch):
    """data.jitter / saturation / exposure put YOLO's crop and HSV jitter before flip and sanitising."""
    from visiontasks.data.factory import build_dataset
    from visiontasks.data.transforms import build_detection_transforms

    steps = build_detection_transforms(True, jitter=0.2, saturation=1.5, exposure=1.5).transforms
    assert [type(s).__name__ for s in steps][:2] == ["RandomJitterCrop", "RandomHSV"]
    assert build_detection_transforms(False, jitter=0.2, saturation=1.5) is None  # evaluation: untouched
    monkeypatch.setenv("VISIONTASKS_HOME", str(embedded_root.parent))
    cfg = {"dataset": "embedded", "hflip_prob": 0.5, "jitter": 0.2, "saturation": 1.5, "exposure": 1.5}
    plain = build_dataset({**cfg, "jitter": 0.0, "saturation": 1.0, "exposure": 1.0, "hflip_prob": 0.0},
                          "trainval", train=True)
    jittered = build_dataset(cfg, "trainval", train=True)
    torch.manual_seed(0)
    shapes = set()
    for i in range(12):
        image, target = jittered[i]
        shapes.add(tuple(image.shape))
        assert image.dtype == torch.float32 and 0.0 <= image.min() and image.max() <= 1.0
        h, w = image.shape[-2:]
        boxes = target["boxes"]
        assert len(boxes) == len(target["labels"]) == len(target["difficult"])
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
    assert len(shapes) > 1  # the crop window changes the image size (the model's warp undoes it)
    assert {tuple(plain[i][0].shape) for i in range(12)} == {(3, 160, 160)}
