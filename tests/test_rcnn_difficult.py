"""R-CNN's feature cache keeps difficult objects as ground truth (rbgirshick/rcnn roidb_from_voc.m)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from visiontasks.detection.base import drop_difficult
from visiontasks.detection.rcnn.features import target_record, write_image_features
from visiontasks.detection.rcnn.stages import SVMStage


def _extract(gt_boxes: torch.Tensor, proposals: torch.Tensor):
    boxes = torch.cat((gt_boxes.float(), proposals.float()))
    n = len(boxes)
    fc7 = np.arange(n, dtype=np.float16)[:, None].repeat(3, axis=1)  # row i holds the value i
    return boxes, fc7, np.ones((n, 2), np.float16)


def _target() -> dict:
    # a plain object of class 1 and a difficult one of class 2; proposals: on the difficult
    # object (IoU = 56·59 / (56·61 + 60·60 − 56·59) = 3304 / 3712 = 0.89) and on background
    return {"image_id": "img", "boxes": torch.tensor([[10.0, 10.0, 50.0, 50.0], [100.0, 100.0, 160.0, 160.0]]),
            "labels": torch.tensor([1, 2]), "difficult": torch.tensor([False, True]),
            "proposals": torch.tensor([[102.0, 101.0, 158.0, 162.0], [300.0, 300.0, 340.0, 340.0]])}


def test_a_proposal_on_a_difficult_object_is_not_a_negative(tmp_path):
    record = target_record(_target(), _extract, num_classes=2)
    assert record["labels"].tolist() == [1, 2, 0, 0]  # both objects are ground-truth rows
    assert record["overlap"][2, 1] == pytest.approx(3304 / 3712, abs=1e-6)
    write_image_features(tmp_path, "img", record)
    negatives = SVMStage._negatives(tmp_path, "img", 2, 0.3, 1.0)[:, 0].tolist()
    # rows 0 (class-1 box) and 3 (background) are class-2 negatives; row 2 (on the difficult object) is not
    assert negatives == [0.0, 3.0]
    # and the difficult box itself is a class-2 positive, as rcnn_train.m's d.class == j
    assert SVMStage._positives(tmp_path, ["img"], [2])[2][:, 0].tolist() == [1.0]


def test_dropping_difficult_first_made_it_a_hard_negative(tmp_path):
    # the behaviour this replaces: drop_difficult before the cache leaves the proposal with IoU 0
    record = target_record(drop_difficult(_target()), _extract, num_classes=2)
    write_image_features(tmp_path, "img", record)
    # rows: 0 the class-1 box, 1 the proposal on the (dropped) difficult object, 2 background
    assert SVMStage._negatives(tmp_path, "img", 2, 0.3, 1.0)[:, 0].tolist() == [0.0, 1.0, 2.0]


def test_the_cache_needs_proposals():
    target = _target()
    del target["proposals"]
    with pytest.raises(ValueError, match="proposals"):
        target_record(target, _extract, 2)
