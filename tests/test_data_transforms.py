"""Box/mask-aware transforms (hand-computed), dataset-level augmentation, and collate_fn."""
from __future__ import annotations

import pytest
import torch

from visiontasks.data import (
    EMBEDDED_CLASSES, VOCDetection, apply_transforms, build_dataset, build_detection_transforms,
    build_segmentation_transforms, collate_fn,
)


def _item() -> tuple[torch.Tensor, dict]:
    """A 6x10 image with a bright 3x3 block at rows 1..3, cols 2..4 and the box/mask that cover it."""
    image = torch.full((3, 6, 10), 40, dtype=torch.uint8)
    image[:, 1:4, 2:5] = 250
    mask = torch.zeros(6, 10, dtype=torch.int64)
    mask[1:4, 2:5] = 2
    target = {"boxes": torch.tensor([[2.0, 1.0, 4.0, 3.0]]), "labels": torch.tensor([2]),
              "difficult": torch.tensor([True]), "image_id": "x", "orig_size": torch.tensor([6, 10]), "mask": mask}
    return image, target


def test_flip_moves_boxes_in_inclusive_pixels_and_masks_follow():
    image, target = _item()
    out, t = apply_transforms(build_detection_transforms(train=True, hflip_prob=1.0), image, target)
    # x -> W - 1 - x with W = 10: [2, 4] -> [5, 7]
    assert t["boxes"].tolist() == [[5.0, 1.0, 7.0, 3.0]]
    assert t["labels"].tolist() == [2] and t["difficult"].tolist() == [True]
    cols = torch.nonzero(t["mask"] == 2)[:, 1]
    assert cols.min() == 5 and cols.max() == 7
    bright = torch.nonzero(out[0] > 0.9)
    assert bright[:, 1].min() == 5 and bright[:, 1].max() == 7 and bright[:, 0].tolist() == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert out.dtype == torch.float32 and t["mask"].dtype == torch.int64 and t["image_id"] == "x"
    assert t["orig_size"].tolist() == [6, 10]


def test_no_flip_keeps_everything():
    image, target = _item()
    out, t = apply_transforms(build_detection_transforms(train=True, hflip_prob=0.0), image, target)
    assert t["boxes"].tolist() == [[2.0, 1.0, 4.0, 3.0]]
    assert torch.allclose(out, image.float() / 255)


def test_degenerate_boxes_removed_with_labels_and_difficult_aligned():
    image, target = _item()
    target.pop("mask")
    target["boxes"] = torch.tensor([[3.0, 3.0, 3.0, 5.0], [0.0, 0.0, 5.0, 5.0], [1.0, 2.0, 8.0, 2.0]])
    target["labels"] = torch.tensor([1, 2, 3])
    target["difficult"] = torch.tensor([False, True, False])
    _, t = apply_transforms(build_detection_transforms(train=True, hflip_prob=0.0), image, target)
    assert t["boxes"].tolist() == [[0.0, 0.0, 5.0, 5.0]]
    assert t["labels"].tolist() == [2] and t["difficult"].tolist() == [True]


def test_resize_shorter_side_with_max_size():
    image, target = _item()
    target.pop("mask")
    # shorter side 6 -> 20 would make the longer side 33.3 > 30, so the scale is 30 / 10 = 3
    out, t = apply_transforms(build_detection_transforms(train=False, min_size=20, max_size=30), image, target)
    assert out.shape == (3, 18, 30)
    assert t["boxes"].tolist() == [[6.0, 3.0, 12.0, 9.0]]
    out, _ = apply_transforms(build_detection_transforms(train=False, min_size=12), image, target)
    assert out.shape == (3, 12, 20)


def test_eval_transforms_are_identity_and_arguments_checked():
    assert build_detection_transforms(train=False, photometric=True) is None
    assert build_segmentation_transforms(train=False, crop_size=8, photometric=True) is None
    for bad in (dict(hflip_prob=1.5), dict(min_size=0), dict(max_size=2.5)):
        with pytest.raises(ValueError):
            build_detection_transforms(train=True, **bad)
    with pytest.raises(ValueError):
        build_segmentation_transforms(train=True, crop_size=(0, 3))


def test_photometric_changes_only_the_image():
    torch.manual_seed(0)
    image = torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8)
    target = {"boxes": torch.tensor([[1.0, 2.0, 9.0, 12.0]]), "labels": torch.tensor([1]), "difficult": torch.tensor([False])}
    tf = build_detection_transforms(train=True, hflip_prob=0.0, photometric=True)
    changed = 0
    for _ in range(6):
        out, t = apply_transforms(tf, image, target)
        assert t["boxes"].tolist() == [[1.0, 2.0, 9.0, 12.0]]
        assert 0.0 <= out.min() and out.max() <= 1.0
        changed += not torch.allclose(out, image.float() / 255)
    assert changed >= 1


def test_segmentation_crop_pads_mask_with_255_and_image_with_0():
    torch.manual_seed(0)
    image, target = _item()
    image[:] = 200
    target = {"mask": target["mask"], "image_id": "x"}
    out, t = apply_transforms(build_segmentation_transforms(train=True, hflip_prob=0.0, crop_size=8), image, target)
    assert out.shape == (3, 8, 8) and t["mask"].shape == (8, 8)
    padded = t["mask"] == 255
    assert int(padded.sum()) == 64 - 6 * 8  # height 6 padded to 8, width 10 cropped to 8
    assert torch.equal(padded, (out == 0).all(0))


def test_segmentation_vertical_flip_moves_image_and_mask_together():
    image, target = _item()  # block at rows 1..3 of 6: flipped to rows 2..4
    target = {"mask": target["mask"], "image_id": "x"}
    out, t = apply_transforms(build_segmentation_transforms(train=True, hflip_prob=0.0, vflip_prob=1.0), image, target)
    expected = torch.zeros(6, 10, dtype=torch.int64)
    expected[2:5, 2:5] = 2
    assert torch.equal(t["mask"], expected)
    assert torch.equal(out[0] > 0.5, expected == 2)
    same, _ = apply_transforms(build_segmentation_transforms(train=True, hflip_prob=0.0, vflip_prob=0.0), image, target)
    torch.testing.assert_close(same, image.float() / 255)  # 0: nothing moves
    with pytest.raises(ValueError, match="vflip_prob must lie in"):
        build_segmentation_transforms(train=True, vflip_prob=1.5)


def test_segmentation_rescale_by_a_ratio_of_the_image_size():
    image, target = _item()  # 6 x 10, label 2 on rows 1..3, columns 2..4
    target = {"mask": target["mask"], "image_id": "x"}
    out, t = apply_transforms(build_segmentation_transforms(train=True, hflip_prob=0.0, scale_range=(2.0, 2.0)),
                              image, target)
    expected = torch.zeros(12, 20, dtype=torch.int64)  # nearest: output row i reads input row i // 2
    expected[2:8, 4:10] = 2
    assert out.shape == (3, 12, 20) and torch.equal(t["mask"], expected)
    torch.manual_seed(0)
    sizes = {tuple(apply_transforms(build_segmentation_transforms(train=True, hflip_prob=0.0, scale_range=(0.5, 1.5)),
                                    image, target)[1]["mask"].shape) for _ in range(30)}
    assert len(sizes) > 3 and all(3 <= h <= 9 and 5 <= w <= 15 and abs(w / h - 10 / 6) < 0.5 for h, w in sizes)
    for bad in ((1.5, 0.5), (0.0, 1.0), (1.0,), "big"):
        with pytest.raises(ValueError, match="ratio_range"):
            build_segmentation_transforms(train=True, scale_range=bad)


@pytest.mark.parametrize("task, value, message", [("detection", [0.5, 1.5], "segmentation augmentation"),
                                                  ("segmentation", [2.0, 1.0], "0 < low <= high")])
def test_scale_range_refused_in_one_line_naming_the_key(embedded_root, task, value, message):
    from visiontasks.errors import InputError

    cfg = {"dataset": "embedded", "root": str(embedded_root), "scale_range": value}
    with pytest.raises(InputError, match=message) as info:
        build_dataset(cfg, "trainval", train=True, task=task)
    assert "data.scale_range" in str(info.value) and "\n" not in str(info.value)


def test_vertical_flip_refused_for_detection(embedded_root):
    from visiontasks.errors import InputError

    cfg = {"dataset": "embedded", "root": str(embedded_root), "vflip_prob": 0.5}
    with pytest.raises(InputError, match="data.vflip_prob"):
        build_dataset(cfg, "trainval", train=True, task="detection")


def test_flip_through_the_dataset(embedded_root):
    plain = VOCDetection(embedded_root, "test", classes=EMBEDDED_CLASSES)
    flipped = VOCDetection(embedded_root, "test", classes=EMBEDDED_CLASSES,
                           transforms=build_detection_transforms(train=True, hflip_prob=1.0))
    i = next(k for k in range(len(plain)) if len(plain.get_annotation(k)["boxes"]))
    (a, ta), (b, tb) = plain[i], flipped[i]
    w = a.shape[-1]
    assert torch.equal(b, a.flip(-1))
    expected = torch.stack([w - 1 - ta["boxes"][:, 2], ta["boxes"][:, 1], w - 1 - ta["boxes"][:, 0], ta["boxes"][:, 3]], 1)
    assert torch.equal(tb["boxes"], expected) and torch.equal(tb["labels"], ta["labels"])


def test_build_dataset_from_config(embedded_root, monkeypatch):
    monkeypatch.setenv("VISIONTASKS_HOME", str(embedded_root.parent))  # reuse the fixture's dataset
    cfg = {"dataset": "embedded", "root": None, "classes": None, "hflip_prob": 0.5, "photometric": False,
           "min_size": None, "max_size": None, "crop_size": 64}
    det = build_dataset(cfg, "trainval", train=True)
    assert det.root == embedded_root and det.classes == EMBEDDED_CLASSES and len(det) == 300
    seg = build_dataset(cfg, "val", train=True, task="segmentation")
    image, t = seg[0]
    assert image.shape == (3, 64, 64) and t["mask"].shape == (64, 64)
    with pytest.raises(ValueError, match="data.root"):
        build_dataset({**cfg, "dataset": "voc"}, "trainval", train=False)
    with pytest.raises(ValueError, match="dataset"):
        build_dataset({**cfg, "dataset": "imagenet"}, "trainval", train=False)
    with pytest.raises(ValueError, match="task"):
        build_dataset(cfg, "trainval", train=False, task="depth")


def test_collate_keeps_sizes_and_order():
    batch = [(torch.zeros(3, 4, 5), {"image_id": "a"}), (torch.ones(3, 7, 2), {"image_id": "b"})]
    images, targets = collate_fn(batch)
    assert [tuple(i.shape) for i in images] == [(3, 4, 5), (3, 7, 2)]
    assert [t["image_id"] for t in targets] == ["a", "b"] and images[1] is batch[1][0]
