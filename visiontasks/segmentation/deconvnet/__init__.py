"""DeconvNet (Noh et al. 2015): the network, its two-stage training and instance-wise inference.

- ``model.py``: the VGG16 encoder + mirrored unpooling/deconvolution decoder (251,805,653 parameters).
- ``instance_wise.py``: the paper's inference (§3.3 / §4.2): a pass per proposal window, class maps
  merged by pixel-wise max.
- ``stages.py``, ``crops.py``, ``windows.py``: the two training stages (object-centred crops, then
  harder proposal windows or full images) as engine stages.
- ``ensemble.py``: EDeconvNet, DeconvNet + FCN-8s averaged class-conditional maps.
"""
from visiontasks.segmentation.deconvnet.ensemble import EnsembleSegmenter, edeconvnet
from visiontasks.segmentation.deconvnet.instance_wise import InstanceWiseInference
from visiontasks.segmentation.deconvnet.model import DeconvNet, deconvnet

__all__ = ["DeconvNet", "deconvnet", "InstanceWiseInference", "EnsembleSegmenter", "edeconvnet"]
