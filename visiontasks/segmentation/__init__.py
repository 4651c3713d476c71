"""Learned segmentation models: FCN-32s/16s/8s, DeconvNet, dilated front-end (+ context module), a small FCN.

Every model maps (B, 3, H, W) images in [0, 1] to ``{"out": (B, K, H, W) logits}`` for any H, W
(K = classes + background). Registered names: ``fcn32s``, ``fcn16s``, ``fcn8s``, ``deconvnet``,
``dilated_frontend``, ``dilated_context``, ``fcn_small``, ``edeconvnet`` (DeconvNet + FCN-8s ensemble).
"""
from visiontasks.segmentation.context import ContextModule
from visiontasks.segmentation.deconvnet import DeconvNet, EnsembleSegmenter, deconvnet, edeconvnet

from visiontasks.segmentation.dilated import DilatedContextNet, DilatedFrontEnd, dilated_context, dilated_frontend
from visiontasks.segmentation.fcn import FCN, fcn8s, fcn16s, fcn32s
from visiontasks.segmentation.small import SmallFCN, fcn_small
from visiontasks.segmentation.upsample import bilinear_kernel, bilinear_upsampler

__all__ = [
    "FCN", "fcn32s", "fcn16s", "fcn8s", "DeconvNet", "deconvnet", "DilatedFrontEnd", "DilatedContextNet",
    "dilated_frontend", "dilated_context", "ContextModule", "SmallFCN", "fcn_small",
    "bilinear_kernel", "bilinear_upsampler", "EnsembleSegmenter", "edeconvnet",
]
