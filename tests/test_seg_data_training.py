"""A few training iterations lower the segmentation loss on the embedded masks and on real photos."""
from __future__ import annotations

import torch

from visiontasks.data import VOCSegmentation, build_segmentation_transforms, embedded_classes
from visiontasks.engine.run import segmentation_forward
from visiontasks.registry import get_model


def _loss_drop(dataset, num_classes: int, steps: int = 8) -> tuple[float, float]:
    torch.manual_seed(0)
    model = get_model("fcn_small", num_classes=num_classes)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    batch = [dataset[i] for i in range(4)]
    images, targets = [b[0] for b in batch], [b[1] for b in batch]
    losses = []
    for _ in range(steps):
        loss = sum(segmentation_forward(model, images, targets).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses[0], losses[-1]


def test_loss_drops_on_embedded_masks(embedded_root):
    ds = VOCSegmentation(embedded_root, "trainval", classes=embedded_classes())
    first, last = _loss_drop(ds, len(ds.classes) + 1)
    assert last < 0.7 * first


def test_loss_drops_on_real_photos(coco128_root):
    tf = build_segmentation_transforms(train=True, hflip_prob=0.0, crop_size=192)
    ds = VOCSegmentation(coco128_root, "train", transforms=tf)
    first, last = _loss_drop(ds, 21)
    assert last < 0.7 * first
