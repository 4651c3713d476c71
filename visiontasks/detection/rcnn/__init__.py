"""R-CNN (Girshick et al. 2014): warped regions, fc7 SVMs with hard-negative mining, pool5 box regression.

Built from the shared parts on ``TwoStageDetector`` (see ``model.py``); the fitting stages that
follow fine-tuning live in ``feature_cache.py`` and ``stages.py`` and are reusable by SPP-net's builder (a pooler with
``output_dim``, a head that hands fc7 and pool5 to the predictor, the feature cache, the SVM and
ridge fits).
"""
from visiontasks.detection.rcnn.bbox_reg import RidgeAccumulator, regression_targets, ridge_regression
from visiontasks.detection.rcnn.head import RCNNHead
from visiontasks.detection.rcnn.model import CROP_SIZES, RCNN, rcnn
from visiontasks.detection.rcnn.predictor import SVMBoxPredictor
from visiontasks.detection.rcnn.feature_cache import FeatureCacheStage
from visiontasks.detection.rcnn.stages import BoxRegressionStage, SVMStage
from visiontasks.detection.rcnn.svm import MiningResult, mine_hard_negatives, train_linear_svm
from visiontasks.detection.rcnn.warp import WarpedRegionPooler, context_boxes, warp_regions

__all__ = [
    "RCNN", "rcnn", "CROP_SIZES", "RCNNHead", "SVMBoxPredictor", "WarpedRegionPooler",
    "context_boxes", "warp_regions", "FeatureCacheStage", "SVMStage", "BoxRegressionStage", "MiningResult",
    "mine_hard_negatives", "train_linear_svm", "RidgeAccumulator", "regression_targets", "ridge_regression",
]
