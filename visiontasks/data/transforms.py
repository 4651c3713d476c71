"""Box- and mask-aware augmentation on ``torchvision.transforms.v2`` and ``tv_tensors``.

Datasets call :func:`apply_transforms`, which wraps the decoded image as ``tv_tensors.Image``,
the boxes as ``BoundingBoxes(format=XYXY, canvas_size=(H, W))`` and the mask as ``Mask``, runs
``transforms(image, target)`` and unwraps the result to plain tensors (image float32 in [0, 1]).

Boxes follow the VOC/py-faster-rcnn convention of 0-based *inclusive* pixel coordinates, so a
horizontal flip maps ``x -> W - 1 - x`` (as py-faster-rcnn's ``append_flipped_images``), not
torchvision's continuous ``x -> W - x``; :class:`RandomHorizontalFlip` does that.

Precomputed region proposals (Fast R-CNN, SPP-net, R-CNN) travel in ``target["proposals"]``
as a second ``BoundingBoxes`` set: every geometric transform (flip, resize) moves them with the
image, and :class:`SanitizeBoundingBoxes` cleans the ground truth only — proposals are never
indexed with the ground truth's keep mask (the detector's proposer clips and filters them).

Shape shorthand: H, W = image height and width; N = boxes; R = proposals.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from visiontasks.data.jitter import RandomHSV, RandomJitterCrop
from visiontasks.data.rescale import RandomRescale

__all__ = [
    "RandomHorizontalFlip",
    "SanitizeBoundingBoxes",
    "apply_transforms",
    "build_detection_transforms",
    "build_segmentation_transforms",
]

Transform = Callable[[Any, Any], tuple[Any, Any]]


class RandomHorizontalFlip(v2.RandomHorizontalFlip):
    """``v2.RandomHorizontalFlip`` with boxes flipped in inclusive pixel coordinates (``W - 1 - x``)."""

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        out = super().transform(inpt, params)
        if isinstance(inpt, tv_tensors.BoundingBoxes):
            if inpt.format != tv_tensors.BoundingBoxFormat.XYXY:
                raise ValueError(f"boxes must be XYXY, got {inpt.format!r}")
            shift = out.new_tensor([1.0, 0.0, 1.0, 0.0])
            out = tv_tensors.wrap(out.as_subclass(torch.Tensor) - shift, like=inpt)
        return out


class SanitizeBoundingBoxes(v2.SanitizeBoundingBoxes):
    """``v2.SanitizeBoundingBoxes`` on the ground truth only: ``target["proposals"]`` passes unchanged."""

    def forward(self, *inputs: Any) -> Any:
        packed = len(inputs) == 1
        image, target = inputs[0] if packed else inputs
        if not isinstance(target, dict) or "proposals" not in target:
            return super().forward(*inputs)
        target = dict(target)
        proposals = target.pop("proposals")
        image, target = super().forward(image, target)
        target["proposals"] = proposals
        return image, target


def _labels_and_difficult(inputs: Any) -> tuple[torch.Tensor, ...]:
    # SanitizeBoundingBoxes removes the same rows from every tensor returned here.
    target = inputs[1] if isinstance(inputs, (tuple, list)) and len(inputs) > 1 else inputs[0][1]
    return tuple(target[k] for k in ("labels", "difficult") if k in target)


def _photometric() -> v2.Transform:
    return v2.RandomPhotometricDistort(p=0.5)  # SSD-style brightness/contrast/saturation/hue


def build_detection_transforms(
    train: bool,
    hflip_prob: float = 0.5,
    photometric: bool = False,
    min_size: int | None = None,
    max_size: int | None = None,
    jitter: float = 0.0,
    saturation: float = 1.0,
    exposure: float = 1.0,
) -> v2.Compose | None:
    """Transforms for ``(image, target)`` detection items.

    Args:
        train: add the random augmentation (flip, photometric jitter); False gives only the resize.
        hflip_prob: probability of a horizontal flip (train only).
        photometric: add SSD-style photometric distortion (train only).
        min_size: resize so that the shorter side is ``min_size`` (None: no resize).
        max_size: cap on the longer side after resizing (with ``min_size`` None: longer side = max_size).
        jitter: YOLO/darknet scale-and-translation jitter (train only): each side of a crop window
            moves by up to ``jitter`` × the image side (YOLOv1: 0.2); 0 turns it off.
        saturation, exposure: YOLO/darknet HSV jitter limits (train only): S and V are scaled by a
            factor in [1/limit, limit] (YOLOv1: 1.5); 1 turns each off.

    Returns:
        A ``v2.Compose``, or None when there is nothing to do.
    """
    if not 0.0 <= hflip_prob <= 1.0:
        raise ValueError(f"hflip_prob must lie in [0, 1], got {hflip_prob!r}")
    for name, value in (("min_size", min_size), ("max_size", max_size)):
        if value is not None and (not isinstance(value, int) or value <= 0):
            raise ValueError(f"{name} must be a positive int or None, got {value!r}")
    steps: list[v2.Transform] = []
    if train and (jitter or saturation != 1.0 or exposure != 1.0):
        if jitter:
            steps.append(RandomJitterCrop(jitter))
        if saturation != 1.0 or exposure != 1.0:
            steps.append(RandomHSV(saturation, exposure))
    if train and photometric:
        steps.append(_photometric())
    if min_size is not None or max_size is not None:
        steps.append(v2.Resize(size=min_size, max_size=max_size, antialias=True))
    if train and hflip_prob > 0:
        steps.append(RandomHorizontalFlip(p=hflip_prob))
    if train:  # drop boxes narrower than 1 px (e.g. a one-pixel VOC box: x1 == x0), keeping labels aligned
        steps.append(SanitizeBoundingBoxes(min_size=1, labels_getter=_labels_and_difficult))
    return v2.Compose(steps) if steps else None


def build_segmentation_transforms(
    train: bool,
    hflip_prob: float = 0.5,
    crop_size: int | tuple[int, int] | None = None,
    photometric: bool = False,
    vflip_prob: float = 0.0,
    scale_range: Sequence[float] | None = None,
) -> v2.Compose | None:
    """Transforms for ``(image, target)`` segmentation items (target holds ``mask``).

    Args:
        train: add the random augmentation; False gives None (evaluate at full resolution).
        hflip_prob: probability of a horizontal flip.
        vflip_prob: probability of a vertical flip (MMSegmentation's ``RandomFlip`` direction
            "vertical"); 0 by default: only for data whose classes do not depend on which way is up.
        crop_size: random crop (int: square); smaller images are padded with 0 in the image
            and 255 (ignore) in the mask.
        photometric: add SSD-style photometric distortion.
        scale_range: ``(low, high)``: rescale by a random ratio in it, before the crop
            (:class:`visiontasks.data.rescale.RandomRescale`); None: no rescaling.

    Returns:
        A ``v2.Compose``, or None when there is nothing to do.
    """
    rescale = RandomRescale(scale_range) if scale_range is not None else None  # checks the range in any mode
    for name, p in (("hflip_prob", hflip_prob), ("vflip_prob", vflip_prob)):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1], got {p!r}")
    if not train:
        return None
    steps: list[v2.Transform] = []
    if photometric:
        steps.append(_photometric())
    if hflip_prob > 0:
        steps.append(RandomHorizontalFlip(p=hflip_prob))
    if vflip_prob > 0:
        steps.append(v2.RandomVerticalFlip(p=vflip_prob))
    if rescale is not None:
        steps.append(rescale)
    if crop_size is not None:
        size = (crop_size, crop_size) if isinstance(crop_size, int) else tuple(crop_size)
        if len(size) != 2 or any(not isinstance(s, int) or s <= 0 for s in size):
            raise ValueError(f"crop_size must be a positive int or (h, w), got {crop_size!r}")
        fill = {tv_tensors.Image: 0, tv_tensors.Mask: 255}
        steps.append(v2.RandomCrop(size, pad_if_needed=True, fill=fill))
    return v2.Compose(steps) if steps else None


def apply_transforms(
    transforms: Transform | None, image: torch.Tensor, target: dict[str, Any]
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Wraps an item as tv_tensors, applies ``transforms`` and unwraps to plain tensors.

    Args:
        transforms: ``transforms(image, target) -> (image, target)`` or None.
        image: (3, H, W) uint8 or float tensor.
        target: dict with optional ``boxes`` (N, 4) xyxy, ``proposals`` (R, 4) xyxy and ``mask`` (H, W).

    Returns:
        ``(image, target)``: image float32 (3, H', W') in [0, 1]; boxes and proposals float32,
        mask int64.
    """
    h, w = image.shape[-2:]
    image = tv_tensors.Image(image)
    target = dict(target)
    for key in ("boxes", "proposals"):
        if key in target:
            target[key] = tv_tensors.BoundingBoxes(target[key], format="XYXY", canvas_size=(h, w))
    if "mask" in target:
        target["mask"] = tv_tensors.Mask(target["mask"])
    if transforms is not None:
        image, target = transforms(image, target)
    image = F.to_dtype(image.as_subclass(torch.Tensor), torch.float32, scale=True)
    for key in ("boxes", "proposals", "mask"):
        if key in target:
            target[key] = target[key].as_subclass(torch.Tensor)
    for key in ("boxes", "proposals"):
        if key in target:
            target[key] = target[key].to(torch.float32)
    if "mask" in target:
        target["mask"] = target["mask"].to(torch.int64)
    return image.contiguous(), target
