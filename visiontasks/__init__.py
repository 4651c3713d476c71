"""visiontasks: the classic CNN detection and segmentation lineage behind one API.

Box format everywhere: ``xyxy`` float pixels, 0-based (VOC's 1-based files are converted on read).

    import visiontasks
    model = visiontasks.load_model("default")
    result = model.predict("photo.jpg")
"""
from visiontasks.api import PRESETS, Predictor, load_model
from visiontasks.errors import InputError
from visiontasks.registry import get_model, list_models, register_model
from visiontasks.results import DetectionResult, SegmentationResult
from visiontasks.summary import summary

__version__ = "0.1.0"

__all__ = [
    "InputError", "get_model", "list_models", "register_model", "load_model", "Predictor", "PRESETS",
    "DetectionResult", "SegmentationResult", "summary", "__version__",
]
