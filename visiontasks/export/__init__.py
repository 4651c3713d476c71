"""Deployment: ONNX export of the detectors and segmenters, checked against onnxruntime.

    from visiontasks.export import export_onnx
    report = export_onnx(predictor.model, "detection", "model.onnx")

Needs the ``export`` extra (``pip install -e ".[export]"``: onnx, onnxruntime).
"""
from visiontasks.export.detectors import ExportError, TwoStageForExport, YOLOForExport, detector_for_export
from visiontasks.export.onnx import OPSET, TOLERANCE, ExportReport, box_tolerance, check_onnx, export_onnx
from visiontasks.export.segmenters import SegmenterForExport

__all__ = ["ExportError", "ExportReport", "export_onnx", "check_onnx", "detector_for_export", "TwoStageForExport",
           "YOLOForExport", "SegmenterForExport", "OPSET", "TOLERANCE", "box_tolerance"]
