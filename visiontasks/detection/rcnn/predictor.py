"""R-CNN's fitted predictor: per-class linear SVMs on fc7 and ridge box regressors on pool5.

After fine-tuning, R-CNN (Girshick et al. 2014, §2.3, appendix B/C) throws the softmax away and
scores each region with one linear SVM per class on its fc7 features, then moves the box with a
class-specific linear regressor on its pool5 features. :class:`SVMBoxPredictor` holds both as
buffers (they are fitted, not trained by SGD, and travel in the state dict):

    svm_weight  (K, D)   svm_bias  (K,)     fc7_scale    ()   row 0 (background) stays 0
    bbox_weight (K, 4, F) bbox_bias (K, 4)  pool5_scale  ()   row 0 stays 0 (no move)

``fc7_scale`` / ``pool5_scale`` are R-CNN's feature normalisation (``rcnn_scale_features.m``):
features are multiplied by ``20 / mean feature norm`` of the training features before the
linear models, as when they were fitted.

Interface of the predictors (``visiontasks/detection/predictor.py``)::

    predictor(fc7, pool5) -> (margins (R, K), deltas (R, K, 4))
    predictor.inference(margins, deltas, proposals, image_sizes) -> B dicts boxes/labels/scores
    predictor.losses(...)  -> an error: the SVMs and regressors are fitted by the R-CNN stages

Scores: an SVM margin is not a probability, but the package has one threshold in [0, 1)
(``score_thresh``, set to 0.7 / 0.05 by the API's presets). The reported score is
``sigmoid(margin)``: margin 0 (the SVM's decision boundary) ↔ 0.5, margin −1 (the negatives'
margin) ↔ 0.27, the "visualize" preset 0.7 ↔ margin 0.85, the "evaluate" preset 0.05 ↔ margin
−2.94 (which keeps practically every detection R-CNN would rank). A monotone map per class leaves
the VOC AP unchanged.

Test-time order: per class, boxes are regressed, clipped, thresholded and then suppressed (NMS
0.3) — the order of R-CNN's released code, where ``rcnn_test_bbox_regressor.m`` moves the
scored boxes and ``imdb_eval_voc.m`` applies NMS to the moved boxes. (The paper's text does not
fix the order; regressing first keeps NMS from leaving overlapping duplicates after the move.)
Box deltas are R-CNN's unnormalised (dx, dy, dw, dh) of appendix C (``BoxCoder`` weights 1).

Precision: the SVMs and regressors always compute in float32, also under bf16 autocast
(``load_model(precision="bf16")``): their inputs (fc7, pool5) come from the bf16 CNN, but a margin
or a box delta rounded to bf16's 8 significant bits would move scores by ~0.4 % and boxes by up to
a pixel, for a product of ~2 MFLOP per region against the CNN's 31 GFLOP (VGG16).

Shape shorthand: R = regions, K = classes incl. background, D = fc7 width, F = pool5 width (C·P²).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from visiontasks.detection.box_coder import BoxCoder
from visiontasks.detection.predictor import select_detections
from visiontasks.precision import autocast

__all__ = ["SVMBoxPredictor", "RCNN_BOX_WEIGHTS"]

#: R-CNN regresses the raw (dx, dy, dw, dh) of appendix C (no target normalisation).
RCNN_BOX_WEIGHTS = (1.0, 1.0, 1.0, 1.0)


class SVMBoxPredictor(nn.Module):
    """Linear SVM scores on fc7 and class-specific box regression on pool5 (all buffers).

    Args:
        fc7_dim: D.
        pool5_dim: F (C·P²).
        num_classes: K, background included.
        score_thresh: smallest reported score (``sigmoid(margin)``) kept at test time.
        nms_thresh: per-class NMS threshold (0.3 in R-CNN).
        detections_per_img: most detections per image.
    """

    #: Tells :class:`~visiontasks.detection.rcnn.head.RCNNHead` to pass pool5 besides fc7.
    uses_pool5 = True

    def __init__(self, fc7_dim: int, pool5_dim: int, num_classes: int, score_thresh: float = 0.05,
                 nms_thresh: float = 0.3, detections_per_img: int = 100) -> None:
        super().__init__()
        if int(num_classes) < 2:
            raise ValueError(f"num_classes counts the background and must be >= 2, got {num_classes!r}")
        if not 0.0 <= score_thresh < 1.0:
            raise ValueError(f"score_thresh must be in [0, 1), got {score_thresh!r}")
        if not 0.0 < nms_thresh <= 1.0:
            raise ValueError(f"nms_thresh must be in (0, 1], got {nms_thresh!r}")
        k, d, f = int(num_classes), int(fc7_dim), int(pool5_dim)
        self.num_classes = k
        self.register_buffer("svm_weight", torch.zeros(k, d))
        self.register_buffer("svm_bias", torch.zeros(k))
        self.register_buffer("fc7_scale", torch.tensor(1.0))
        self.register_buffer("bbox_weight", torch.zeros(k, 4, f))
        self.register_buffer("bbox_bias", torch.zeros(k, 4))
        self.register_buffer("pool5_scale", torch.tensor(1.0))
        self.box_coder = BoxCoder(RCNN_BOX_WEIGHTS)
        self.score_thresh = float(score_thresh)
        self.nms_thresh = float(nms_thresh)
        self.detections_per_img = int(detections_per_img)

    @torch.no_grad()
    def set_svm(self, label: int, weight: torch.Tensor, bias: float, scale: float) -> None:
        """Installs class ``label``'s SVM (``weight`` (D,) on features multiplied by ``scale``)."""
        self._check_label(label)
        self.svm_weight[label] = torch.as_tensor(weight, dtype=torch.float32)
        self.svm_bias[label] = float(bias)
        self.fc7_scale.fill_(float(scale))

    @torch.no_grad()
    def set_box_regressor(self, label: int, weight: torch.Tensor, bias: torch.Tensor, scale: float) -> None:
        """Installs class ``label``'s regressor (``weight`` (4, F), ``bias`` (4,) on features × ``scale``)."""
        self._check_label(label)
        self.bbox_weight[label] = torch.as_tensor(weight, dtype=torch.float32)
        self.bbox_bias[label] = torch.as_tensor(bias, dtype=torch.float32)
        self.pool5_scale.fill_(float(scale))

    def _check_label(self, label: int) -> None:
        if not 1 <= int(label) < self.num_classes:
            raise ValueError(f"label must be in 1..{self.num_classes - 1}, got {label!r}")

    def margins(self, fc7: torch.Tensor) -> torch.Tensor:
        """SVM margins (R, K) of (R, D) fc7 features (column 0, background, is 0), in float32."""
        with autocast(fc7.device, None):  # fp32 also under autocast (module docstring)
            return (fc7.float() * self.fc7_scale) @ self.svm_weight.t() + self.svm_bias

    def deltas(self, pool5: torch.Tensor) -> torch.Tensor:
        """Class-specific (dx, dy, dw, dh) (R, K, 4) from pool5 (R, C, P, P) or (R, F), in float32."""
        x = pool5.flatten(1).float() * self.pool5_scale
        k = self.num_classes
        with autocast(x.device, None):
            return (x @ self.bbox_weight.reshape(k * 4, -1).t() + self.bbox_bias.reshape(-1)).view(-1, k, 4)

    def forward(self, fc7: torch.Tensor, pool5: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """fc7 (R, D) and pool5 → margins (R, K) and deltas (R, K, 4) (zeros without pool5)."""
        margins = self.margins(fc7)
        if pool5 is None:
            return margins, margins.new_zeros((margins.shape[0], self.num_classes, 4))
        return margins, self.deltas(pool5)

    def losses(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        raise ValueError("R-CNN's SVMs and box regressors are fitted by its training stages (features, svm, "
                           "bbox_reg), not by SGD: this model's predictor is already fitted; start a new run to "
                           "fine-tune again")

    @torch.no_grad()
    def inference(self, margins: torch.Tensor, deltas: torch.Tensor, proposals: list[torch.Tensor],
                  image_sizes: list[tuple[int, int]]) -> list[dict]:
        """Detections per image: scores ``sigmoid(margin)``, regressed boxes, per-class NMS."""
        scores = torch.sigmoid(margins.float())
        boxes = self.box_coder.decode(deltas, torch.cat(proposals)) if len(margins) else deltas
        return select_detections(scores, boxes, [len(p) for p in proposals], image_sizes, self.score_thresh,
                                 self.nms_thresh, self.detections_per_img)

    def extra_repr(self) -> str:
        k, d = self.svm_weight.shape
        return (f"num_classes={k}, fc7_dim={d}, pool5_dim={self.bbox_weight.shape[-1]}, "
                f"score=sigmoid(margin) > {self.score_thresh}, nms_thresh={self.nms_thresh}")
