"""YOLOv1 (Redmon et al. 2016): the single-stage grid detector of the lineage.

``get_model("yolov1")`` (the paper's 24-conv network, or ``backbone=`` a shared backbone),
``get_model("fast_yolo")`` (9 conv layers); the darknet networks are also registered as the
backbones ``darknet24`` and ``darknet9``. See ``model.py`` for the builders, ``loss.py`` for
equation 3 and ``decode.py`` for inference.
"""
from visiontasks.detection.yolo.darknet import DARKNET9_LAYERS, DARKNET24_LAYERS, Darknet, darknet9, darknet24
from visiontasks.detection.yolo.decode import YOLODecoder, class_scores, cxcywh_to_xyxy, grid_boxes
from visiontasks.detection.yolo.head import YOLOHead
from visiontasks.detection.yolo.loss import LOSS_NAMES, YOLOLoss, encode_targets
from visiontasks.detection.yolo.model import DARKNET_OPTIM, YOLOv1, fast_yolo, yolov1

__all__ = [
    "Darknet", "DARKNET24_LAYERS", "DARKNET9_LAYERS", "darknet24", "darknet9", "YOLOHead", "YOLOLoss",
    "encode_targets", "LOSS_NAMES", "YOLODecoder", "class_scores", "grid_boxes", "cxcywh_to_xyxy", "YOLOv1",
    "yolov1", "fast_yolo", "DARKNET_OPTIM",
]
