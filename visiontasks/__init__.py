"""visiontasks: the classic CNN detection and segmentation lineage behind one API.

Box format everywhere: ``xyxy`` float pixels, 0-based (VOC's 1-based files are converted on read).
"""
from visiontasks.errors import InputError
from visiontasks.registry import get_model, list_models, register_model

__version__ = "0.1.0"

__all__ = ["InputError", "get_model", "list_models", "register_model", "__version__"]
