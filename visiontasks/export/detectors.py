"""Export wrappers of the detectors: one float (3, H, W) image in [0, 1] → boxes, scores, labels.

The outputs follow torchvision's exported detectors: ``boxes`` (N, 4) xyxy float in the input
image's pixels, ``scores`` (N,) descending, ``labels`` (N,) int64 in 1..C (N may be 0). The
score threshold is the model's at export time (``Predictor.use_preset`` / ``score_thresh``).

* Two-stage detectors with an RPN (``faster_rcnn``): any image size.
* Detectors fed proposals (``fast_rcnn``): proposals (R, 4) xyxy in image pixels are a second
  input; selective search itself (OpenCV) has no ONNX form and stays outside the graph.
* YOLOv1 / Fast YOLO: any image size (the graph warps it to the fixed input).
* R-CNN and SPP-net are refused by :func:`detector_for_export` with the reason.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.detection._utils import _topk_min
from torchvision.ops import nms, remove_small_boxes

from visiontasks.export.traced import clip_boxes, image_hw, rescale_boxes, select_boxes

__all__ = ["ExportError", "TwoStageForExport", "YOLOForExport", "detector_for_export", "anchors_for"]


class ExportError(ValueError):
    """A model (or one of its operations) that cannot be exported faithfully; the message names both."""


def anchors_for(generator: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """The ``AnchorGenerator``'s anchors for ``features``' map with the map size kept a graph value
    (the generator itself reads it into Python ints and caches per size)."""
    from visiontasks.detection.anchors import base_anchors

    hw = image_hw(features)
    base = base_anchors(generator.sizes, generator.ratios, generator.stride, device=features.device)
    sx = torch.arange(hw[1], device=features.device, dtype=torch.float32) * generator.stride
    sy = torch.arange(hw[0], device=features.device, dtype=torch.float32) * generator.stride
    yy, xx = torch.meshgrid(sy, sx, indexing="ij")
    shifts = torch.stack((xx, yy, xx, yy), dim=-1).reshape(-1, 1, 4)
    return (shifts + base[None]).reshape(-1, 4)


class TwoStageForExport(nn.Module):
    """A ``TwoStageDetector``'s test-time path for one image, every size a graph value.

    Args:
        model: a ``TwoStageDetector`` with a ``RegionProposalNetwork`` or ``PrecomputedProposals``
            proposer and a ``FastRCNNPredictor``, in eval mode.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.uses_proposals = bool(getattr(model, "needs_proposals", False))

    def _proposals(self, features: torch.Tensor, size: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        rpn = self.model.proposer
        logits, deltas = rpn.head(features)
        anchors = anchors_for(rpn.anchor_generator, features)
        k = _topk_min(logits[0], rpn.pre_nms_top_n[1], 0)
        top_logits, top_idx = logits[0].float().topk(k)
        boxes = clip_boxes(rpn.box_coder.decode(deltas[0][top_idx], anchors[top_idx]), size)
        keep = remove_small_boxes(boxes, rpn.min_size * scale)
        boxes, top_logits = boxes[keep], top_logits[keep]
        return boxes[nms(boxes, top_logits, rpn.nms_thresh)[: rpn.post_nms_top_n[1]]]

    def _given(self, proposals: torch.Tensor, original: torch.Tensor, size: torch.Tensor,
               scale: torch.Tensor) -> torch.Tensor:
        prop = self.model.proposer
        boxes = clip_boxes(rescale_boxes(proposals.float(), original, size), size)
        side = torch.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        boxes = boxes[torch.where((side > 0) & (side >= prop.min_size * scale))[0]]
        return boxes[: prop.max_proposals] if prop.max_proposals else boxes

    def _resize(self, image: torch.Tensor, hw: torch.Tensor) -> torch.Tensor:
        """``GeneralizedRCNNTransform.resize`` at test time with the output size as a graph value.

        Eager PyTorch resizes by ``scale_factor`` with ``recompute_scale_factor=True``: the output
        size is floor(side × scale) and the sampling uses output/input. torchvision's traced path
        hands the scale to ONNX ``Resize``, which samples with the unrounded scale — a slightly
        different image whenever side × scale is not whole; resizing to the computed *size* is exact.
        """
        from visiontasks.detection.transform import NormalizeTransform

        t = self.model.transform
        if isinstance(t, NormalizeTransform):
            return image
        # In float64 with true divisions: eager computes the scale and floor(side × scale) in Python
        # floats (160 / 100 × 100 = 160, where float32 gives 159.99999).
        side = hw.double()
        lo = torch.full((), float(t.min_size[-1]), dtype=torch.float64)
        hi = torch.full((), float(t.max_size), dtype=torch.float64)
        scale = torch.minimum(torch.div(lo, side.min()), torch.div(hi, side.max()))
        out = torch.floor(side * scale).to(torch.int64)
        return F.interpolate(image[None], size=(out[0], out[1]), mode="bilinear", align_corners=False)[0]

    def forward(self, image: torch.Tensor, proposals: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(3, H, W) in [0, 1] (and (R, 4) proposals in its pixels) → boxes, scores, labels."""
        m = self.model
        original = image_hw(image)
        x = self._resize(m.transform.normalize(image), original)
        size = image_hw(x)
        scale = torch.sqrt((size[0].float() / original[0].float()) * (size[1].float() / original[1].float()))
        batch = m.transform.batch_images([x], size_divisible=m.transform.size_divisible)
        features = m.backbone(batch)
        if self.uses_proposals:
            rois = self._given(proposals, original, size, scale)
        else:
            rois = self._proposals(features, size, scale)
        head = m.roi_head
        logits, deltas = head.predictor(head.box_head(head.pooler(features, [rois], [size])))
        pred = head.predictor
        scores = F.softmax(logits, dim=-1)
        boxes = pred.box_coder.decode(deltas, rois)
        boxes, scores, labels = select_boxes(scores, boxes, size, pred.score_thresh, pred.nms_thresh,
                                             pred.detections_per_img)
        return rescale_boxes(boxes, size, original), scores, labels


def _pool_matrix(n: int, s: int) -> torch.Tensor:
    """(s, n) averaging matrix of ``adaptive_avg_pool`` from n to s cells: row i averages
    ``[floor(i·n/s), ceil((i+1)·n/s))``."""
    m = torch.zeros(s, n)
    for i in range(s):
        lo, hi = (i * n) // s, -(-((i + 1) * n) // s)
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m


class StaticAdaptiveAvgPool(nn.Module):
    """``nn.AdaptiveAvgPool2d`` for one known input size as two matrix products (separable, exact).

    The ONNX exporter refuses adaptive pooling whose output does not divide the input (e.g.
    YOLOv1 on the small backbone: 10×10 → 7×7); the input size is fixed by the warp, so the
    pooling is a fixed linear map.
    """

    def __init__(self, in_hw: tuple[int, int], out_hw: tuple[int, int]) -> None:
        super().__init__()
        self.register_buffer("rows", _pool_matrix(in_hw[0], out_hw[0]), persistent=False)
        self.register_buffer("cols", _pool_matrix(in_hw[1], out_hw[1]), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("ih,nchw,jw->ncij", self.rows.to(x), x, self.cols.to(x))


def _static_pools(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """A copy of ``model`` whose ``AdaptiveAvgPool2d`` layers are :class:`StaticAdaptiveAvgPool`
    for the sizes they see on ``example`` (a fixed-size input)."""
    import copy

    sizes: dict[str, tuple[int, int]] = {}
    hooks = [mod.register_forward_hook(lambda _m, inp, _o, key=name: sizes.__setitem__(key, tuple(inp[0].shape[-2:])))
             for name, mod in model.named_modules() if isinstance(mod, nn.AdaptiveAvgPool2d)]
    with torch.no_grad():
        model(example)
    for h in hooks:
        h.remove()
    if not sizes:
        return model
    model = copy.deepcopy(model)
    for name, in_hw in sizes.items():
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        pool = getattr(parent, attr)
        out = pool.output_size if isinstance(pool.output_size, tuple) else (pool.output_size,) * 2
        out = tuple(i if o is None else int(o) for o, i in zip(out, in_hw))
        setattr(parent, attr, StaticAdaptiveAvgPool(in_hw, out))
    return model


class YOLOForExport(nn.Module):
    """YOLOv1's test-time path for one image of any size (warped to the model's fixed input)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        h, w = model.transform.size
        device = next(model.parameters()).device
        with torch.no_grad():
            features = model.backbone(torch.zeros(1, 3, h, w, device=device))
        self.head = _static_pools(model.head, features)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(3, H, W) in [0, 1] → boxes, scores, labels."""
        from visiontasks.detection.yolo.decode import class_scores

        m, dec = self.model, self.model.decoder
        original = image_hw(image)
        batch, _ = m.transform([image])
        h, w = m.transform.size
        # The warp's output size is fixed: say so to the tracer (a constant reshape), or ops such as
        # adaptive pooling downstream see a dynamic size and refuse to export.
        x = batch.tensors.reshape(1, batch.tensors.shape[1], h, w)
        pred = self.head(m.backbone(x)).float()
        boxes, scores = class_scores(pred, dec.num_boxes, dec.num_classes)
        boxes = boxes.reshape(-1, 4) * torch.tensor([w, h, w, h], dtype=boxes.dtype, device=boxes.device)
        scores = scores.reshape(-1, dec.num_classes)
        scores = torch.cat([scores.new_zeros(scores.shape[0], 1), scores], dim=1)
        size = torch.tensor([h, w], device=boxes.device)
        boxes, scores, labels = select_boxes(scores, boxes[:, None, :].expand(-1, scores.shape[1], 4), size,
                                             dec.score_thresh, dec.nms_thresh, dec.detections_per_img)
        return rescale_boxes(boxes, size, original), scores, labels


#: Registered detectors with no faithful ONNX graph yet, and why (printed by the exporter).
REFUSED = {
    "WarpedRegionPooler": "R-CNN's WarpedRegionPooler (a warp and a CNN pass per region, run in Python-sized "
                          "chunks) has no exportable form here",
    "SVMBoxPredictor": "R-CNN's SVMBoxPredictor (per-class SVMs and pool5 ridge regressors) has no export path",
    "ScalePyramid": "SPP-net's ScalePyramid resizes the image to Python-computed sizes per scale, which a traced "
                    "graph would freeze to the example image's",
}


def detector_for_export(model: nn.Module, name: str = "") -> nn.Module:
    """The export wrapper of a detector, or :class:`ExportError` naming the model and the part.

    Args:
        model: a visiontasks detector in eval mode.
        name: the registry / config name, for messages.
    """
    from visiontasks.detection.predictor import FastRCNNPredictor
    from visiontasks.detection.proposals.precomputed import PrecomputedProposals
    from visiontasks.detection.rpn import RegionProposalNetwork
    from visiontasks.detection.transform import DetectionTransform
    from visiontasks.detection.two_stage import TwoStageDetector
    from visiontasks.detection.yolo.model import YOLOv1

    label = name or type(model).__name__
    if isinstance(model, YOLOv1):
        return YOLOForExport(model)
    parts = {type(model).__name__, *(type(m).__name__ for m in model.modules())}
    for part, why in REFUSED.items():
        if part in parts:
            raise ExportError(f"{label}: cannot export to ONNX: {why}")
    if not isinstance(model, TwoStageDetector):
        raise ExportError(f"{label}: cannot export {type(model).__name__} to ONNX (no export path for it)")
    checks = ((model.proposer, (RegionProposalNetwork, PrecomputedProposals)),
              (model.roi_head.predictor, (FastRCNNPredictor,)), (model.transform, (DetectionTransform,)))
    for part, kinds in checks:
        if type(part) not in kinds:
            raise ExportError(f"{label}: cannot export to ONNX: {type(part).__name__} has no export path")
    if model.backbone.takes_image_list:
        raise ExportError(f"{label}: cannot export to ONNX: {type(model.backbone).__name__} needs the Python image sizes")
    return TwoStageForExport(model)
