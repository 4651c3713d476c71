"""Datasets, transforms and helpers: VOC layout, COCO json, and an embedded procedural set.

Items are ``(image, target)``: image float32 (3, H, W) in [0, 1]; target with ``boxes`` (N, 4)
float32 xyxy 0-based, ``labels`` (N,) int64 1..C, ``difficult`` (N,) bool, ``image_id`` str,
``orig_size`` int64 [H, W]; segmentation targets carry ``mask`` (H, W) int64 (255 = ignore).
"""
from visiontasks.data.annotation import VOCAnnotation, parse_voc_xml
from visiontasks.data.coco import COCODetection, coco_classes, load_coco
from visiontasks.data.collate import collate_fn
from visiontasks.data.download import VOC_ARCHIVES, download_voc, md5sum, safe_extract
from visiontasks.data.embedded import EMBEDDED_CLASSES, build_embedded_dataset, default_cache_dir, embedded_classes
from visiontasks.data.factory import DATASETS, build_dataset, dataset_classes
from visiontasks.data.palette import read_label_png, save_label_png, voc_colormap
from visiontasks.data.transforms import (
    RandomHorizontalFlip,
    apply_transforms,
    build_detection_transforms,
    build_segmentation_transforms,
)
from visiontasks.data.voc import VOC_CLASSES, VOCDetection, VOCSegmentation, image_size, read_image

__all__ = [
    "COCODetection", "DATASETS", "EMBEDDED_CLASSES", "RandomHorizontalFlip", "VOCAnnotation", "VOCDetection",
    "VOCSegmentation", "VOC_ARCHIVES", "VOC_CLASSES", "apply_transforms", "build_dataset",
    "build_detection_transforms", "build_embedded_dataset", "build_segmentation_transforms", "coco_classes",
    "collate_fn", "dataset_classes", "default_cache_dir", "download_voc", "embedded_classes", "image_size",
    "load_coco", "md5sum", "parse_voc_xml", "read_image", "read_label_png", "safe_extract", "save_label_png",
    "voc_colormap",
]
