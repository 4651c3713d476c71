"""Faster R-CNN (Ren et al. 2015): the builder (``model.py``) and the paper's 4-step alternating
training as engine stages (``alternating.py``); approximate joint training is the default."""
from visiontasks.detection.faster_rcnn.alternating import ALTERNATING_STEPS, attach_alternating, parse_alternating
from visiontasks.detection.faster_rcnn.model import faster_rcnn

__all__ = ["faster_rcnn", "ALTERNATING_STEPS", "attach_alternating", "parse_alternating"]
