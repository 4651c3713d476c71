"""R-CNN's region warping (Girshick et al. 2014, §2.1 and appendix A) as an RoI pooler.

Each proposal is cropped from the (normalised) image with ``context_pad`` pixels of context,
warped anisotropically to ``crop_size`` × ``crop_size`` (227 AlexNet, 224 VGG16), run through the
CNN's convolutional body and max-pooled to pool5. It is the ``pooler`` of an
:class:`~visiontasks.detection.rcnn.head.RCNNHead`: ``pooler(images, proposals, image_sizes) ->
(R, C, P, P)`` with ``output_dim(C) = C·P²``, so the backbone's fc6/fc7 head fits it unchanged.

Context padding ("p = 16" in the paper, ``rcnn_im_crop.m``): the box is scaled about its centre
by ``crop_size / (crop_size - 2 · context_pad)`` so that, after warping the expanded box to the
crop, the original box fills the central ``crop_size - 2·context_pad`` pixels and exactly
``context_pad`` pixels of context lie on each side. Where the expanded box leaves the image the
crop holds the image mean — 0 after the detector's ImageNet normalisation (``build_transform("none")``).

Sampling: crop pixel ``(i, j)`` takes the bilinear interpolation of the image at the continuous
point ``(y0 + (i + ½)·h/S, x0 + (j + ½)·w/S)`` of the expanded box (pixel ``k`` covers
``[k, k + 1)``, its centre is ``k + ½``; boxes are continuous ``xyxy`` like the rest of the
package). Points inside the image but within half a pixel of its border take the border pixel;
points outside ``[0, W] × [0, H]`` take the mean (0). This is ``torchvision.ops.roi_align`` with
``aligned=True`` and one sample per bin, masked outside each image's own size (so batch padding
is never read). R-CNN's MATLAB crop rounds the expanded box to whole pixels and resizes with
``imresize(..., 'bilinear', 'antialiasing', false)``; we keep the box continuous.

pool5: ``adaptive_max_pool2d(conv, P)``. For AlexNet at 227 (conv5 13×13 → 6×6) its windows are
those of the original 3×3/2 max pool, for VGG16 at 224 (14×14 → 7×7) those of the 2×2/2 pool
(tests/test_rcnn_warp.py checks both), and any other crop size still gives P×P.

RoIs are processed ``chunk_size`` at a time (crops, body and pool per chunk), so memory grows with
the chunk, not with the number of proposals.

Low precision (``load_model(precision="bf16")``, the feature cache's ``feature_precision: bf16``):
under ``torch.autocast`` the float32 crops are handed to the body already in the autocast dtype and
channels-last (:func:`autocast_input`), the layout oneDNN's bf16 convolutions run in natively, so
the first convolution neither casts nor reorders its input; outside autocast they stay float32
NCHW, exactly as before (the fp32 path is unchanged, tests/test_rcnn_fast_path.py).

Shape shorthand: B = images, R = RoIs, S = crop size, C = body channels, P = pool size.
"""
from __future__ import annotations

from typing import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import roi_align

__all__ = ["WarpedRegionPooler", "context_boxes", "warp_regions", "rois_with_index", "autocast_input"]


def autocast_input(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) ``x`` as the CNN's input: in the autocast dtype and channels-last when autocast
    is on for ``x``'s device (what oneDNN's bf16 convolutions compute in), else ``x`` itself."""
    device_type = x.device.type
    if x.dim() != 4 or not torch.is_autocast_enabled(device_type):
        return x
    dtype = torch.get_autocast_dtype(device_type)
    return x.to(dtype=dtype, memory_format=torch.channels_last)


def context_boxes(boxes: torch.Tensor, crop_size: int, context_pad: int) -> torch.Tensor:
    """Expands (R, 4) xyxy boxes about their centres by ``crop_size / (crop_size - 2·context_pad)``."""
    if context_pad == 0:
        return boxes
    scale = crop_size / (crop_size - 2.0 * context_pad)
    centre = 0.5 * (boxes[:, :2] + boxes[:, 2:])
    half = 0.5 * (boxes[:, 2:] - boxes[:, :2]) * scale
    return torch.cat((centre - half, centre + half), dim=1)


def rois_with_index(proposals: list[torch.Tensor]) -> torch.Tensor:
    """B tensors (R_i, 4) → (R, 5) rows ``[image index, x0, y0, x1, y1]`` (float32)."""
    if not proposals:
        return torch.zeros((0, 5))
    idx = [torch.full((len(p), 1), float(i), dtype=torch.float32, device=p.device) for i, p in enumerate(proposals)]
    return torch.cat([torch.cat((i, p.float()), dim=1) for i, p in zip(idx, proposals)])


def warp_regions(images: torch.Tensor, rois: torch.Tensor, image_sizes: list[tuple[int, int]], crop_size: int,
                 context_pad: int) -> torch.Tensor:
    """Warped crops of R regions with context, 0 (the normalised mean) outside each image.

    Args:
        images: (B, 3, H, W) normalised, possibly zero-padded images.
        rois: (R, 5) ``[image index, x0, y0, x1, y1]`` in image pixels.
        image_sizes: B (h, w) of the unpadded images.
        crop_size: S.
        context_pad: context pixels on each side of the crop.

    Returns:
        (R, 3, S, S) float32 crops.
    """
    images = images.float()
    if rois.numel() == 0:
        return images.new_zeros((0, images.shape[1], crop_size, crop_size))
    rois = rois.to(images)
    boxes = context_boxes(rois[:, 1:], crop_size, context_pad)
    crops = roi_align(images, torch.cat((rois[:, :1], boxes), dim=1), output_size=(crop_size, crop_size),
                      spatial_scale=1.0, sampling_ratio=1, aligned=True)
    # Sample points (continuous pixel coordinates) and whether they lie in their own image.
    t = (torch.arange(crop_size, device=images.device, dtype=images.dtype) + 0.5) / crop_size  # (S,)
    xs = boxes[:, 0:1] + t * (boxes[:, 2:3] - boxes[:, 0:1])  # (R, S)
    ys = boxes[:, 1:2] + t * (boxes[:, 3:4] - boxes[:, 1:2])
    sizes = torch.tensor(image_sizes, dtype=images.dtype, device=images.device)[rois[:, 0].long()]  # (R, 2) h, w
    inside_x = (xs >= 0) & (xs <= sizes[:, 1:2])
    inside_y = (ys >= 0) & (ys <= sizes[:, 0:1])
    mask = (inside_y[:, :, None] & inside_x[:, None, :]).to(crops.dtype)  # (R, S, S)
    return crops * mask[:, None]


class WarpedRegionPooler(nn.Module):
    """Warp each RoI to ``crop_size`` with context, run the CNN body, max-pool to P × P (pool5).

    Args:
        body: the convolutional part (a ``Backbone``: (N, 3, S, S) → (N, C, h, w)), owned here.
        crop_size: S (227 AlexNet, 224 VGG16, e.g. 112 for the small backbone).
        context_pad: context pixels on each side of the warped crop (16 in the paper).
        pool_size: P (the backbone's ``pool_size``: 6 AlexNet, 7 VGG16).
        chunk_size: RoIs warped and run through the body at once.
    """

    def __init__(self, body: nn.Module, crop_size: int, context_pad: int, pool_size: int,
                 chunk_size: int = 128) -> None:
        super().__init__()
        if int(crop_size) <= 0:
            raise ValueError(f"crop_size must be a positive integer, got {crop_size!r}")
        if not 0 <= int(context_pad) < int(crop_size) / 2:
            raise ValueError(f"context_pad must be in [0, crop_size / 2), got {context_pad!r} for crop_size "
                             f"{crop_size!r}")
        if int(pool_size) <= 0:
            raise ValueError(f"pool_size must be a positive integer, got {pool_size!r}")
        if int(chunk_size) <= 0:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        self.body = body
        self.crop_size = int(crop_size)
        self.context_pad = int(context_pad)
        self.output_size = int(pool_size)
        self.chunk_size = int(chunk_size)

    def output_dim(self, channels: int) -> int:
        """Flattened width of one pooled RoI (C·P²)."""
        return int(channels) * self.output_size**2

    def warp(self, images: torch.Tensor, rois: torch.Tensor, image_sizes: list[tuple[int, int]]) -> torch.Tensor:
        """(R, 5) RoIs → (R, 3, S, S) crops (see :func:`warp_regions`)."""
        return warp_regions(images, rois, image_sizes, self.crop_size, self.context_pad)

    def pool_rois(self, images: torch.Tensor, rois: torch.Tensor, image_sizes: list[tuple[int, int]]) -> torch.Tensor:
        """pool5 of (R, 5) RoIs in one go (no chunking): (R, C, P, P); under autocast the body
        gets its input in the autocast dtype and channels-last (:func:`autocast_input`)."""
        conv = self.body(autocast_input(self.warp(images, rois, image_sizes)))
        return F.adaptive_max_pool2d(conv, self.output_size)

    def chunks(self, images: torch.Tensor, proposals: list[torch.Tensor],
               image_sizes: list[tuple[int, int]]) -> Iterator[torch.Tensor]:
        """pool5 of ``chunk_size`` RoIs at a time, in the order of ``proposals``."""
        rois = rois_with_index(proposals).to(images.device)
        for start in range(0, len(rois), self.chunk_size):
            yield self.pool_rois(images, rois[start:start + self.chunk_size], image_sizes)

    def forward(self, images: torch.Tensor, proposals: list[torch.Tensor],
                image_sizes: list[tuple[int, int]]) -> torch.Tensor:
        """pool5 of every RoI.

        Args:
            images: (B, 3, H, W) normalised images (the "features" of the identity backbone).
            proposals: B tensors (R_i, 4) xyxy in image pixels.
            image_sizes: B (h, w) of the unpadded images.

        Returns:
            (R, C, P, P), R = Σ R_i, in the order of ``proposals``.
        """
        out = list(self.chunks(images, proposals, image_sizes))
        if not out:
            c = getattr(self.body, "out_channels", 0)
            return images.new_zeros((0, c, self.output_size, self.output_size))
        return torch.cat(out)

    def extra_repr(self) -> str:
        return (f"crop_size={self.crop_size}, context_pad={self.context_pad}, pool_size={self.output_size}, "
                f"chunk_size={self.chunk_size}")
