"""DeconvNet (Noh, Hong & Han, ICCV 2015): a VGG16 encoder mirrored by an unpooling/deconvolution decoder.

Architecture (paper Fig. 2 / Table 1):

* Convolution network: VGG16 conv1_1 … conv5_3 (ImageNet weights when pretrained) with the five
  2×2 max-poolings recording their **switches**; fc6 as a 7×7 convolution (4096, no padding: 7×7 →
  1×1 on a 224 input) and fc7 as 1×1 (4096), weights reshaped from the ImageNet classifier.
* Deconvolution network, the mirror image: deconv-fc6 (7×7 transposed conv 4096 → 512, 1×1 → 7×7),
  then for each of the five stages an unpooling (``nn.MaxUnpool2d``) that puts every value back at
  the position its pooling switch recorded, followed by 3×3 transposed convolutions mirroring the
  stage's convolutions (512 ×3; 512, 512, 256; 256, 256, 128; 128, 64; 64, 64).
* Batch normalisation after **every** convolution and deconvolution (§3.3), then ReLU; a final 1×1
  score layer 64 → K. About 252M parameters, as the paper says (fc6 and deconv-fc6 hold 103M each).
  In training mode, BatchNorm over fc6/fc7 needs more than one value per channel: with inputs of at
  most 224×224 (a 1×1 fc map) use batches of 2 or more (the paper: 64).

Inference (``inference``): ``"full"`` runs the network once on the whole image (below);
``"instance"`` is the paper's instance-wise inference — a pass per proposal window, the windows'
maps merged by pixel-wise max (:mod:`visiontasks.segmentation.deconvnet.instance_wise`, which cites the
released code; selective search stands in for EdgeBoxes). It applies in eval mode only: training
always runs the full network. Training in the paper's two stages (object-centred crops, then
full images): ``stages``, :mod:`visiontasks.segmentation.deconvnet.stages`.

For whole images of any size the input is zero-padded (in normalised space, i.e. with the
mean colour) at the bottom/right to a multiple of 32 and at least 224×224 (so that fc6's 7×7 window
fits), and the output is cropped back: the network is fully convolutional, so a larger input simply
gives a larger fc7 map.

Shape shorthand: B images, K classes (background included), H×W input, H', W' the padded size.
``forward((B, 3, H, W) in [0, 1]) -> {"out": (B, K, H, W) logits}``.
"""
from __future__ import annotations

import os
from typing import Callable

import torch
import torch.nn as nn

from visiontasks.backbones import VGG16_POOL_INDICES, vgg16_torchvision
from visiontasks.registry import register_model
from visiontasks.segmentation.common import (
    ImageNetNormalize, check_num_classes, init_from_checkpoint, pad_to_multiple, vgg16_fc_as_conv,
)
from visiontasks.segmentation.deconvnet.instance_wise import InstanceWiseInference

__all__ = ["DeconvNet", "deconvnet", "DECODER_WIDTHS", "INFERENCE_MODES"]

INFERENCE_MODES = ("full", "instance")

# Output widths of the transposed convolutions after each unpooling, deepest stage first.
DECODER_WIDTHS = ((512, 512, 512), (512, 512, 256), (256, 256, 128), (128, 64), (64, 64))
_MIN_SIZE = 224  # fc6 needs a 7×7 pool5 map


def _bn_relu(layer: nn.Module, channels: int) -> nn.Sequential:
    return nn.Sequential(layer, nn.BatchNorm2d(channels), nn.ReLU(inplace=True))


class DeconvNet(nn.Module):
    """Args:
        num_classes: K, background included (21 for VOC).
        pretrained_backbone: load torchvision's ImageNet VGG16 into the convolution network.
        inference: "full" (one pass over the whole image) or "instance" (the paper's
            instance-wise inference, in eval mode).
        instance: the :class:`~visiontasks.segmentation.deconvnet.instance_wise.InstanceWiseInference`
            used when ``inference == "instance"`` (default: its defaults, selective search).
    """

    def __init__(self, num_classes: int = 21, pretrained_backbone: bool = False, inference: str = "full",
                 instance: InstanceWiseInference | None = None) -> None:
        super().__init__()
        check_num_classes(num_classes)
        if inference not in INFERENCE_MODES:
            raise ValueError(f"model.inference must be one of {INFERENCE_MODES}, got {inference!r}")
        self.num_classes = num_classes
        self.inference = inference
        self.instance = instance
        self.normalize = ImageNetNormalize()
        vgg = vgg16_torchvision(pretrained_backbone)
        layers = list(vgg.features.children())
        starts = (0,) + tuple(i + 1 for i in VGG16_POOL_INDICES[:-1])
        self.encoder = nn.ModuleList(
            nn.Sequential(*[_bn_relu(m, m.out_channels) for m in layers[a:b] if isinstance(m, nn.Conv2d)])
            for a, b in zip(starts, VGG16_POOL_INDICES)
        )
        self.pools = nn.ModuleList(nn.MaxPool2d(2, 2, return_indices=True) for _ in VGG16_POOL_INDICES)
        fc6, fc7 = vgg16_fc_as_conv(vgg)
        self.fc = nn.Sequential(_bn_relu(fc6, 4096), _bn_relu(fc7, 4096),
                                _bn_relu(nn.ConvTranspose2d(4096, 512, 7), 512))
        self.unpools = nn.ModuleList(nn.MaxUnpool2d(2, 2) for _ in VGG16_POOL_INDICES)
        decoder = []
        in_ch = 512
        for widths in DECODER_WIDTHS:
            stage = []
            for out_ch in widths:
                stage.append(_bn_relu(nn.ConvTranspose2d(in_ch, out_ch, 3, padding=1), out_ch))
                in_ch = out_ch
            decoder.append(nn.Sequential(*stage))
        self.decoder = nn.ModuleList(decoder)
        self.score = nn.Conv2d(in_ch, num_classes, 1)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Args:
            images: (B, 3, H, W) float in [0, 1].

        Returns:
            ``{"out": (B, K, H, W) scores}``: the network's logits, or in eval mode with
            ``inference == "instance"`` the windows' max-aggregated scores (0 where no window lies;
            their softmax is the paper's class-conditional map).
        """
        if self.inference == "instance" and not self.training:
            if self.instance is None:
                self.instance = InstanceWiseInference()
            return {"out": torch.stack([self.instance(self.network, image, self.num_classes) for image in images])}
        return {"out": self.network(images)}

    def network(self, images: torch.Tensor) -> torch.Tensor:
        """One pass of the network: (B, 3, H, W) in [0, 1] -> (B, K, H, W) logits."""
        h, w = images.shape[-2:]
        x = pad_to_multiple(self.normalize(images), 32, min_size=_MIN_SIZE)
        switches = []
        for stage, pool in zip(self.encoder, self.pools):
            x = stage(x)
            size = x.shape[-2:]
            x, indices = pool(x)
            switches.append((indices, size))
        x = self.fc(x)
        for stage, unpool, (indices, size) in zip(self.decoder, self.unpools, reversed(switches)):
            x = stage(unpool(x, indices, output_size=size))
        return self.score(x)[..., :h, :w]


@register_model("deconvnet", task="segmentation")
def deconvnet(num_classes: int = 21, pretrained_backbone: bool = False,
              init_from: str | os.PathLike[str] | None = None, inference: str = "full",
              instance_top_n: int = 50, instance_enlarge: float = 1.2, instance_min_side: int = 112,
              instance_input_size: int = 224, instance_proposals: int = 2000,
              proposer: Callable | None = None, stages: dict | None = None) -> DeconvNet:
    """DeconvNet.

    Args:
        num_classes: K, background included.
        pretrained_backbone: ImageNet VGG16 weights in the convolution network.
        init_from: a checkpoint whose same-named weights are copied in.
        inference: "full" or "instance" (the paper's instance-wise inference in eval mode).
        instance_top_n, instance_enlarge, instance_min_side, instance_input_size: windows per
            image (50), their enlargement (1.2), the smallest window side kept (112 px) and the
            network input side (224), as the released code (see ``instance_wise``).
        instance_proposals: selective search boxes asked per image (the paper: ~2000 EdgeBoxes).
        proposer: ``proposer(image (3, H, W)) -> (R, 4)`` ranked boxes replacing selective search.
        stages: the paper's two-stage training (``model.stages``: ``stage1`` object-centred crops,
            ``stage2`` full images; :mod:`visiontasks.segmentation.deconvnet.stages`); None trains in
            one SGD stage on the ``data:`` section.
    """
    instance = InstanceWiseInference(proposer, instance_top_n, instance_enlarge, instance_min_side,
                                     instance_input_size, instance_proposals)
    model = init_from_checkpoint(DeconvNet(num_classes, pretrained_backbone, inference, instance), init_from)
    if stages is not None:
        from visiontasks.segmentation.deconvnet.stages import attach_stages

        attach_stages(model, stages)
    return model
