"""YOLOv1 (Redmon et al. 2016): warp → backbone → 2-FC head → equation-3 loss / decode.

Registered builders (every argument a plain number, string, list or dict, so YAML configs pass
them straight through):

- ``yolov1(num_classes=21, backbone="darknet24", ...)`` — the paper's network (24 conv layers +
  2 FC layers, 7×7×30 for VOC). ``backbone`` also takes ``"darknet9"`` (Fast YOLO's network) or
  any shared backbone (``"vgg16"``, ``"resnet50"``, ``"resnet18"``, ``"alexnet"``, ``"small"``),
  whose stride-16 map is average-pooled to S×S before the same head — the way
  ``faster_rcnn(backbone=...)`` and MMDetection's ``backbone=`` field choose a body, so the same
  registry names and the ``pretrained_backbone`` flag apply.
- ``fast_yolo(num_classes=21, ...)`` — Fast YOLO: the 9-conv ``darknet9`` network with the same
  head; equal to ``yolov1(backbone="darknet9")``.

``num_classes`` counts the background, as every builder here (C = num_classes - 1). The input is
every image warped to ``input_size`` × ``input_size`` (448) and normalised (``normalize``): to
[-1, 1] for darknet (``2x - 1``, the crop layer of the paper's cfg) and with the ImageNet mean/std
for the shared backbones. Detections are mapped back to the
original image per axis and clipped, so the model follows docs/CONTRACTS.md like the two-stage
detectors. Training follows darknet's optimiser convention (:data:`DARKNET_OPTIM`).

Shape shorthand: N = images.
"""
from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn as nn

from visiontasks.backbones import build_backbone
from visiontasks.detection.base import Detector
from visiontasks.detection.transform import IMAGENET_MEAN, IMAGENET_STD, WarpTransform
from visiontasks.detection.yolo.decode import YOLODecoder
from visiontasks.detection.yolo.head import YOLOHead
from visiontasks.detection.yolo.loss import YOLOLoss
from visiontasks.registry import register_model

__all__ = ["YOLOv1", "yolov1", "fast_yolo", "DARKNET_OPTIM", "DARKNET_BACKBONES", "NORMALIZATIONS"]

#: darknet's SGD (``update_convolutional_layer`` / ``update_connected_layer``): biases at the
#: weights' learning rate and without weight decay.
DARKNET_OPTIM: dict[str, float | None] = {"bias_lr_factor": 1.0, "bias_weight_decay": 0.0}
#: The YOLOv1 networks (fed pixels in [0, 1]); every other backbone name is a shared one.
DARKNET_BACKBONES = ("darknet24", "darknet9")
#: Input normalisations: (mean, std) applied after the warp to pixels in [0, 1].
NORMALIZATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]] | None] = {
    "darknet": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # 2x - 1: darknet's crop layer (scale 2, translate -1)
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    "none": None,
}


class YOLOv1(Detector):
    """The single-shot grid detector behind the detection contract of docs/CONTRACTS.md.

    Args:
        backbone: a ``Backbone`` (``out_channels``; any stride — the head pools to S×S).
        head: the :class:`YOLOHead` (N, S, S, 5B+C).
        transform: a ``WarpTransform`` (fixed input size, per-axis box scaling, ``postprocess``).
        loss: the :class:`YOLOLoss`.
        decoder: the :class:`YOLODecoder` (holds ``score_thresh``, ``nms_thresh``).
        loss_weights: multiplier per loss name (see :class:`Detector`).
    """

    optim_defaults = DARKNET_OPTIM

    def __init__(self, backbone: nn.Module, head: YOLOHead, transform: nn.Module, loss: YOLOLoss,
                 decoder: YOLODecoder, loss_weights: dict[str, float] | None = None) -> None:
        super().__init__(loss_weights=loss_weights)
        dims = (head.grid_size, head.num_boxes, head.num_classes)
        if dims != (loss.grid_size, loss.num_boxes, loss.num_classes) or dims[1:] != (decoder.num_boxes,
                                                                                        decoder.num_classes):
            raise ValueError(f"head (S, B, C) = {dims} does not match the loss "
                             f"{(loss.grid_size, loss.num_boxes, loss.num_classes)} / decoder "
                             f"{(decoder.num_boxes, decoder.num_classes)}")
        self.backbone = backbone
        self.head = head
        self.transform = transform
        self.loss = loss
        self.decoder = decoder

    def _score_owner(self) -> nn.Module:
        return self.decoder

    def predictions(self, images: list[torch.Tensor]) -> torch.Tensor:
        """The raw (N, S, S, 5B+C) output for N images in [0, 1] (warped, no targets)."""
        batch, _ = self.transform(list(images), None)
        return self.head(self.backbone(batch.tensors))

    def forward(self, images: list[torch.Tensor], targets: list[dict] | None = None,
                proposals: list[torch.Tensor] | None = None) -> dict[str, torch.Tensor] | list[dict]:
        """Detects objects (eval) or computes the training losses (train).

        Args:
            images: N float tensors (3, H, W) in [0, 1], any sizes.
            targets: per image ``boxes`` (G, 4) xyxy in original pixels and ``labels`` (G,) int64
                in 1..C (``difficult`` objects are dropped); G may be 0. Required in training.
            proposals: unused (YOLO proposes nothing); must be None.

        Returns:
            Training: ``{"loss_xy", "loss_wh", "loss_obj", "loss_noobj", "loss_class"}`` (scalar
            tensors; the engine sums them). Eval: N dicts ``boxes`` (D, 4), ``labels`` (D,) int64,
            ``scores`` (D,) in original-image pixels, scores descending.
        """
        if proposals is not None:
            raise ValueError("YOLOv1 takes no proposals")
        targets, _ = self.prepare_inputs(images, targets, None)
        original_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        batch, targets = self.transform(list(images), targets if self.training else None)
        sizes = [(int(h), int(w)) for h, w in batch.image_sizes]
        pred = self.head(self.backbone(batch.tensors))
        if self.training:
            return self.weigh_losses(self.loss(pred, targets, sizes[0]))
        detections = self.decoder(pred, sizes)
        return self.transform.postprocess(detections, sizes, original_sizes)


def _positive_int(name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


@register_model("yolov1", task="detection")
def yolov1(
    num_classes: int = 21,
    backbone: str = "darknet24",
    pretrained_backbone: bool = False,
    backbone_kwargs: dict[str, Any] | None = None,
    input_size: int = 448,
    grid_size: int = 7,
    num_boxes: int = 2,
    head: str = "fc",
    fc_dim: int = 4096,
    fc_bottleneck: int | None = None,
    dropout: float = 0.5,
    normalize: str | None = None,
    lambda_coord: float = 5.0,
    lambda_noobj: float = 0.5,
    same_cell: str = "random",
    score_thresh: float = 0.005,
    nms_thresh: float = 0.5,
    detections_per_img: int = 100,
    loss_weights: dict[str, float] | None = None,
) -> YOLOv1:
    """Builds YOLOv1.

    Args:
        num_classes: C + 1, background included (21 for VOC → 7×7×30 with S=7, B=2).
        backbone: "darknet24" (the paper's 24 conv layers), "darknet9" (Fast YOLO's 9), or a
            shared backbone ("vgg16", "resnet50", "resnet18", "alexnet", "small").
        pretrained_backbone: load the backbone's ImageNet weights (shared backbones only; none
            exist for darknet).
        backbone_kwargs: extra arguments of the backbone builder (e.g. ``{"batch_norm": true}``
            for darknet, ``{"frozen_stages": 1}`` for ResNet).
        input_size: side of the square warped input (448).
        grid_size: S (7).
        num_boxes: B (2).
        head: "fc" (the paper's two FC layers) or "conv" (NOT the paper: a 3×3 conv of ``fc_dim``
            channels and a 1×1 conv shared by all cells, see ``head.py``).
        fc_dim: width of the first FC layer (4096; with ``head="conv"`` the 3×3 conv's channels).
        fc_bottleneck: optional linear FC before it (None; 256 in darknet's 2015 yolo-tiny.cfg).
        dropout: dropout after the first FC layer (0.5).
        normalize: "darknet" (2x - 1, darknet's input), "imagenet" (mean/std) or "none" ([0, 1]);
            None = "darknet" for the darknet networks, "imagenet" for the shared backbones.
        lambda_coord: λcoord (5).
        lambda_noobj: λnoobj (0.5).
        same_cell: "random" (darknet) or "first": which object a cell trains on when several
            centres fall in it.
        score_thresh: class-specific confidence threshold at test time (0.005, for evaluation;
            darknet displays at 0.2).
        nms_thresh: per-class NMS IoU threshold (0.5, darknet).
        detections_per_img: most detections per image.
        loss_weights: multiplier per loss name (e.g. ``{"loss_class": 2.0}``).

    Returns:
        The detector (:class:`YOLOv1`).
    """
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes counts the background and must be an int >= 2, got {num_classes!r}")
    _positive_int("input_size", input_size)
    _positive_int("grid_size", grid_size)
    _positive_int("num_boxes", num_boxes)
    body = build_backbone(backbone, pretrained_backbone, backbone_kwargs)
    c = num_classes - 1
    head_module = YOLOHead(body.out_channels, grid_size, num_boxes, c, fc_dim=fc_dim, dropout=dropout,
                           fc_bottleneck=fc_bottleneck, kind=head)
    if normalize is None:
        normalize = "darknet" if backbone in DARKNET_BACKBONES else "imagenet"
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {sorted(NORMALIZATIONS)} or None, got {normalize!r}")
    stats = NORMALIZATIONS[normalize]
    transform = WarpTransform(input_size, *(stats if stats is not None else (None, None)))
    loss = YOLOLoss(grid_size, num_boxes, c, lambda_coord=lambda_coord, lambda_noobj=lambda_noobj,
                    same_cell=same_cell)
    decoder = YOLODecoder(num_boxes, c, score_thresh=score_thresh, nms_thresh=nms_thresh,
                          detections_per_img=detections_per_img)
    return YOLOv1(body, head_module, transform, loss, decoder, loss_weights=loss_weights)


@register_model("fast_yolo", task="detection")
def fast_yolo(*args: Any, backbone: str = "darknet9", **kwargs: Any) -> YOLOv1:
    """Builds Fast YOLO: :func:`yolov1` on the 9-conv ``darknet9`` network (same head and loss).

    ``backbone`` is only accepted as "darknet9" (the paper's Fast YOLO); for another backbone use
    ``yolov1(backbone=...)``. The other arguments are :func:`yolov1`'s, passed through (its
    signature, with ``backbone="darknet9"``, is this builder's: configs are checked against it).

    Returns:
        The detector (:class:`YOLOv1`).
    """
    if backbone != "darknet9":
        raise ValueError(f"fast_yolo is the paper's 9-conv network (backbone 'darknet9'), got backbone={backbone!r}; "
                         "use yolov1(backbone=...) to put the YOLO head on another backbone")
    return yolov1(*args, backbone=backbone, **kwargs)


fast_yolo.__signature__ = inspect.signature(yolov1).replace(parameters=[
    p.replace(default="darknet9") if p.name == "backbone" else p for p in inspect.signature(yolov1).parameters.values()])
