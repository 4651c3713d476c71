"""SPP-net (He et al. 2014): spatial pyramid pooling, as a detector and as an image classifier.

``get_model("spp_net")`` is the detector (``model.py``): conv5 once per image at one or five
scales (``scale_pyramid.py``: :class:`ScalePyramid` in the backbone slot, :class:`MultiScaleSPP`
in the pooler slot), a pyramid per window, then R-CNN's fitting stages. ``get_model("spp_alexnet")``
is the classifier (``classifier.py``). The pooler itself, :class:`SpatialPyramidPool`, is a shared
part (``visiontasks/detection/spp.py``, ``pooler: spp`` of any two-stage detector).
"""
from visiontasks.detection.spp_net.classifier import SPPClassifier, spp_alexnet
from visiontasks.detection.spp_net.model import spp_net
from visiontasks.detection.spp_net.scale_pyramid import (SPP_SCALES, MultiScaleSPP, PyramidFeatures, ScalePyramid,
                                                         choose_scales)

__all__ = ["spp_net", "spp_alexnet", "SPPClassifier", "ScalePyramid", "PyramidFeatures", "MultiScaleSPP",
           "SPP_SCALES", "choose_scales"]
