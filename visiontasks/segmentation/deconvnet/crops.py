"""DeconvNet's training samples: ground-truth object boxes, object-centred crops, window crops.

Used by the two training stages (:mod:`visiontasks.segmentation.deconvnet.stages`, which cites the
released code for each choice): a window (an enlarged object box or proposal) is cropped from the
image — black pixels and label 255 where it leaves the image, as HyeonwooNoh/caffe's
``window_seg_data_layer.cpp`` — resized to S×S (image bilinear, labels nearest), randomly cropped
to C×C and flipped.

Shape shorthand: H×W image, N objects, S the resize (250), C the crop (224).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch.utils.data import Dataset

from visiontasks.segmentation.deconvnet.instance_wise import enlarge_windows, window_slices

__all__ = ["object_boxes", "ObjectCrops", "crop_sample"]


def object_boxes(mask: torch.Tensor, instances: torch.Tensor | None = None, min_pixels: int = 1) -> torch.Tensor:
    """Inclusive ``xyxy`` boxes of the ground-truth objects of one mask.

    Args:
        mask: (H, W) int64 class labels, 0 background, 255 ignored.
        instances: (H, W) instance ids (0 = none, 255 ignored), e.g. SBD's ``inst``; without it each
            connected (8-neighbour) region of one class counts as an object.
        min_pixels: objects with fewer pixels are dropped.

    Returns:
        (N, 4) int64 boxes, in row-major order of their first pixel within each class / id.
    """
    m = mask.cpu().numpy()
    if instances is not None:
        ids = instances.cpu().numpy()
        regions = [(ids == i) for i in np.unique(ids) if i not in (0, 255)]
    else:
        regions = []
        for c in np.unique(m):
            if c in (0, 255):
                continue
            labels, n = ndimage.label(m == c, structure=np.ones((3, 3), dtype=bool))
            regions.extend(labels == k for k in range(1, n + 1))
    boxes = []
    for region in regions:
        if region.sum() < min_pixels:
            continue
        ys, xs = np.nonzero(region)
        boxes.append([xs.min(), ys.min(), xs.max(), ys.max()])
    return torch.tensor(boxes, dtype=torch.int64).reshape(-1, 4)


class ObjectCrops(Dataset):
    """Stage 1's samples: one object of image ``i``, centred, enlarged, resized, randomly cropped.

    Args:
        base: a segmentation dataset without transforms: ``base[i] -> (image (3, H, W) float in
            [0, 1], {"mask": (H, W) int64, ...})``; ``base.get_instances(i)`` (SBD) is used when it works.
        enlarge, resize, crop_size, hflip_prob, min_pixels: see
            :data:`~visiontasks.segmentation.deconvnet.stages.STAGE1_DEFAULTS`.

    ``crops[i] -> (image (3, C, C), {"mask": (C, C) int64, "image_id", "window": (4,) int64})``.
    An image without objects gives a crop of the whole image.
    """

    def __init__(self, base: Dataset, enlarge: float = 1.2, resize: int = 250, crop_size: int = 224,
                 hflip_prob: float = 0.5, min_pixels: int = 1) -> None:
        self.base, self.enlarge, self.resize, self.crop_size = base, enlarge, resize, crop_size
        self.hflip_prob, self.min_pixels = hflip_prob, min_pixels

    def __len__(self) -> int:
        return len(self.base)

    def _instances(self, index: int) -> torch.Tensor | None:
        get = getattr(self.base, "get_instances", None)
        if get is None:
            return None
        try:
            return torch.as_tensor(get(index)["instance_mask"])
        except (ValueError, KeyError):  # e.g. an image of the union that comes from VOC, not SBD
            return None

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        image, target = self.base[index]
        mask = target["mask"]
        h, w = mask.shape
        boxes = object_boxes(mask, self._instances(index), self.min_pixels)
        if len(boxes):
            box = boxes[int(torch.randint(len(boxes), ()))]
            window = enlarge_windows(box[None].float(), self.enlarge)[0]
        else:
            window = torch.tensor([0, 0, w - 1, h - 1])
        img, lab = crop_sample(image, mask, window, self.resize, self.crop_size, self.hflip_prob)
        return img, {"mask": lab, "image_id": target.get("image_id", index), "window": window}


def crop_sample(image: torch.Tensor, mask: torch.Tensor, window: torch.Tensor, resize: int, crop_size: int,
                hflip_prob: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A training sample from one window: crop, resize to S×S, random C×C crop, random flip.

    Outside the image the crop is black with label 255 (HyeonwooNoh/caffe
    ``window_seg_data_layer.cpp``: ``copyMakeBorder`` with 0 and ``ignore_label``); the image is
    resized bilinearly and the labels by nearest neighbour, as that layer.

    Args:
        image: (3, H, W) float in [0, 1].
        mask: (H, W) int64 labels.
        window: (4,) int64 inclusive ``xyxy`` window (may leave the image).
        resize: S.
        crop_size: C <= S.
        hflip_prob: probability of a horizontal flip.

    Returns:
        ``(image (3, C, C), mask (C, C))``.
    """
    h, w = mask.shape
    x1, y1, x2, y2 = (int(v) for v in window)
    img = image.new_zeros((3, y2 - y1 + 1, x2 - x1 + 1))
    lab = mask.new_full((y2 - y1 + 1, x2 - x1 + 1), 255)
    parts = window_slices((x1, y1, x2, y2), h, w)
    if parts is not None:
        rows, cols, wrows, wcols = parts
        img[:, wrows, wcols] = image[:, rows, cols]
        lab[wrows, wcols] = mask[rows, cols]
    s, c = resize, crop_size
    img = F.interpolate(img[None], size=(s, s), mode="bilinear", align_corners=False, antialias=True)[0]
    lab = F.interpolate(lab[None, None].float(), size=(s, s), mode="nearest")[0, 0].long()
    top, left = int(torch.randint(s - c + 1, ())), int(torch.randint(s - c + 1, ()))
    img, lab = img[:, top:top + c, left:left + c], lab[top:top + c, left:left + c]
    if float(torch.rand(())) < hflip_prob:
        img, lab = img.flip(-1), lab.flip(-1)
    return img.contiguous(), lab.contiguous()
