"""SPP-net's box regression uses its own released settings, not R-CNN's."""
from __future__ import annotations

import numpy as np
import torch

from visiontasks.detection import rcnn, spp_net
from visiontasks.detection.rcnn.features import image_record, write_image_features
from visiontasks.detection.rcnn.stages import BoxRegressionStage


def test_spp_net_fits_box_regressors_with_its_released_settings():
    spp = spp_net(backbone="small").fit_params
    # spp_exp_bbox_reg_train_and_test_voc.m: min_overlap 0.5, lambda 4000; the SVM settings are R-CNN's
    assert (spp["bbox_iou_thresh"], spp["bbox_lambda"]) == (0.5, 4000.0)
    r = rcnn(backbone="small").fit_params
    assert (r["bbox_iou_thresh"], r["bbox_lambda"]) == (0.6, 1000.0)
    assert {k: v for k, v in spp.items() if not k.startswith("bbox_")} == \
        {k: v for k, v in r.items() if not k.startswith("bbox_")}
    assert spp_net(backbone="small", fit_params={"bbox_lambda": 10.0}).fit_params["bbox_iou_thresh"] == 0.5


def test_regression_examples_at_each_models_threshold(tmp_path):
    # gt [0, 0, 10, 10]; proposals with IoU 100/200 = 0.5, 100/180 = 0.556, 100/140 = 0.714
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    props = torch.tensor([[0.0, 0.0, 10.0, 20.0], [0.0, 0.0, 10.0, 18.0], [0.0, 0.0, 10.0, 14.0]])
    write_image_features(tmp_path, "img", image_record(gt, torch.tensor([1]), props, 1, np.ones((4, 2)),
                                                       np.ones((4, 3))))
    rows = lambda thresh: BoxRegressionStage._examples(tmp_path, ["img"], [1], thresh)[1][0][1].tolist()  # noqa: E731
    assert rows(0.5) == [0, 2, 3]  # SPP-net: IoU > 0.5 (the gt row, 0.556, 0.714; not exactly 0.5)
    assert rows(0.6) == [0, 3]     # R-CNN: IoU > 0.6
