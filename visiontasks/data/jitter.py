"""Colour and crop jitter as ``torchvision.transforms.v2`` transforms on ``tv_tensors`` (darknet's).

YOLOv1 §2.2 trains with them: "random scaling and translations of up to 20% of the original image
size ... randomly adjust the exposure and saturation of the image by up to a factor of 1.5 in the
HSV color space." As darknet implements it (``load_data_region`` and the crop layer of the paper's cfg):

- :class:`RandomJitterCrop` — each side of the crop window moves independently by a uniform
  offset in ±``jitter`` × the image side (0.2): left, right, top, bottom. The window (which may
  reach outside the image; outside is black, darknet's ``crop_image``) becomes the image; a later
  resize (YOLO's 448 × 448 warp) rescales it, so the object scale changes by 0.6–1.4 per axis and the
  content shifts by up to 20 %. Boxes move with the crop and are clipped to it; boxes that end
  up empty are left for ``SanitizeBoundingBoxes`` (the data pipeline's, which also drops their
  labels and ``difficult`` flags).
- :class:`RandomHSV` — saturation and exposure (HSV value) each multiplied by a factor drawn
  uniformly in [1, 1.5] and inverted with probability 1/2 (darknet's ``rand_scale``); hue is
  kept; RGB clipped to [0, 1]. Scaling S and V of HSV at fixed hue is, per channel c with
  V = max(r, g, b): ``c' = exposure · (V − saturation · (V − c))`` — computed so, without a
  colour-space round trip.

``data.jitter`` / ``data.saturation`` / ``data.exposure`` switch them on
(:func:`visiontasks.data.transforms.build_detection_transforms`). Images are ``tv_tensors.Image``
(3, H, W), uint8 or float in [0, 1] (float in [0, 1] after :class:`RandomHSV`); boxes
``tv_tensors.BoundingBoxes`` XYXY.

Shape shorthand: H, W = image height and width.
"""
from __future__ import annotations

from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

__all__ = ["RandomJitterCrop", "RandomHSV"]


def _canvas(flat_inputs: list[Any]) -> tuple[int, int]:
    for inpt in flat_inputs:
        if isinstance(inpt, (tv_tensors.Image, tv_tensors.Mask)) or (torch.is_tensor(inpt) and inpt.dim() == 3
                                                                     and not isinstance(inpt, tv_tensors.TVTensor)):
            return int(inpt.shape[-2]), int(inpt.shape[-1])
        if isinstance(inpt, tv_tensors.BoundingBoxes):
            return tuple(inpt.canvas_size)
    raise TypeError("RandomJitterCrop needs an image (tv_tensors.Image or a (C, H, W) tensor) in its inputs")


class RandomJitterCrop(v2.Transform):
    """darknet's scale/translation jitter: a crop whose four sides move by up to ±``jitter`` × the side.

    Args:
        jitter: largest offset of each side as a fraction of the image width/height (0.2).
    """

    def __init__(self, jitter: float = 0.2) -> None:
        super().__init__()
        if not 0.0 <= float(jitter) < 0.5:
            raise ValueError(f"jitter must be in [0, 0.5), got {jitter!r}")
        self.jitter = float(jitter)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = _canvas(flat_inputs)
        dw, dh = self.jitter * w, self.jitter * h
        left, right = (int((torch.rand(()).item() * 2 - 1) * dw) for _ in range(2))
        top, bottom = (int((torch.rand(()).item() * 2 - 1) * dh) for _ in range(2))
        return {"top": top, "left": left, "height": h - top - bottom, "width": w - left - right}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return F.crop(inpt, **params)


class RandomHSV(v2.Transform):
    """darknet's exposure/saturation jitter in HSV (hue kept), on float images in [0, 1].

    Args:
        saturation: largest factor on S (1.5); the factor is in [1/saturation, saturation].
        exposure: largest factor on V (1.5).
    """

    def __init__(self, saturation: float = 1.5, exposure: float = 1.5) -> None:
        super().__init__()
        if saturation < 1 or exposure < 1:
            raise ValueError(f"saturation and exposure must be >= 1, got {saturation!r}, {exposure!r}")
        self.saturation, self.exposure = float(saturation), float(exposure)

    @staticmethod
    def _factor(limit: float) -> float:
        f = 1.0 + torch.rand(()).item() * (limit - 1.0)
        return f if torch.rand(()).item() < 0.5 else 1.0 / f

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"saturation": self._factor(self.saturation), "exposure": self._factor(self.exposure)}

    @staticmethod
    def apply(image: torch.Tensor, saturation: float, exposure: float) -> torch.Tensor:
        """S × ``saturation``, V × ``exposure`` of a (3, H, W) RGB image, clipped; float in [0, 1] out.

        A uint8 image is converted to float in [0, 1] first (the colour change is not rounded back).
        """
        if image.dtype == torch.uint8:
            image = image.float() / 255.0
        elif not image.is_floating_point():
            raise TypeError(f"RandomHSV works on uint8 or float images in [0, 1], got {image.dtype}")
        v = image.amax(dim=-3, keepdim=True)
        return (exposure * (v - saturation * (v - image))).clamp(0.0, 1.0)

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, tv_tensors.TVTensor) and not isinstance(inpt, tv_tensors.Image):
            return inpt  # boxes, masks: colour does not move them
        out = self.apply(inpt.as_subclass(torch.Tensor), **params)
        return tv_tensors.wrap(out, like=inpt) if isinstance(inpt, tv_tensors.Image) else out
