"""The embedded default dataset: procedural shapes written in VOC layout, no download needed.

:func:`build_embedded_dataset` renders ``num_trainval + num_test`` scenes (see
``visiontasks.data.shapes``) from one seed and writes a complete VOC folder::

    <root>/embedded-v1-seed0-300+100-160px/
        JPEGImages/<id>.jpg  Annotations/<id>.xml  SegmentationClass/<id>.png
        ImageSets/Main/{trainval,test}.txt
        ImageSets/Segmentation/{train,val}.txt   (train = trainval ids, val = test ids;
                                                  trainval.txt/test.txt are copies)

The folder is written under a temporary name and renamed atomically when complete, and reused
when present. The same seed gives byte-identical annotations. Read it with ``VOCDetection`` /
``VOCSegmentation`` and ``classes=EMBEDDED_CLASSES``.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np

from visiontasks.data.palette import save_label_png
from visiontasks.data.shapes import SHAPE_CLASSES, Scene, render_scene

__all__ = ["EMBEDDED_CLASSES", "EMBEDDED_VERSION", "build_embedded_dataset", "embedded_classes", "default_cache_dir"]

EMBEDDED_CLASSES: tuple[str, ...] = SHAPE_CLASSES
EMBEDDED_VERSION = 1
_COMPLETE = ".complete"


def embedded_classes() -> tuple[str, ...]:
    """Class names of the embedded dataset (background excluded)."""
    return EMBEDDED_CLASSES


def default_cache_dir() -> Path:
    """``$VISIONTASKS_HOME`` or ``~/.cache/visiontasks``."""
    home = os.environ.get("VISIONTASKS_HOME")
    return Path(home) if home else Path.home() / ".cache" / "visiontasks"


def _annotation_xml(image_id: str, scene: Scene) -> str:
    h, w = scene.label_map.shape
    objects = []
    for (x0, y0, x1, y1), label, diff in zip(scene.boxes.tolist(), scene.labels.tolist(), scene.difficult.tolist()):
        objects.append(
            "\t<object>\n"
            f"\t\t<name>{EMBEDDED_CLASSES[label - 1]}</name>\n"
            "\t\t<pose>Unspecified</pose>\n\t\t<truncated>0</truncated>\n"
            f"\t\t<difficult>{int(diff)}</difficult>\n"
            "\t\t<bndbox>\n"  # VOC files are 1-based inclusive
            f"\t\t\t<xmin>{x0 + 1}</xmin>\n\t\t\t<ymin>{y0 + 1}</ymin>\n"
            f"\t\t\t<xmax>{x1 + 1}</xmax>\n\t\t\t<ymax>{y1 + 1}</ymax>\n"
            "\t\t</bndbox>\n\t</object>\n"
        )
    return (
        "<annotation>\n\t<folder>embedded</folder>\n"
        f"\t<filename>{image_id}.jpg</filename>\n"
        "\t<source>\n\t\t<database>visiontasks embedded shapes</database>\n\t</source>\n"
        f"\t<size>\n\t\t<width>{w}</width>\n\t\t<height>{h}</height>\n\t\t<depth>3</depth>\n\t</size>\n"
        "\t<segmented>1</segmented>\n" + "".join(objects) + "</annotation>\n"
    )


def _write_layout(out: Path, seed: int, num_trainval: int, num_test: int, image_size: int) -> None:
    for sub in ("JPEGImages", "Annotations", "SegmentationClass", "ImageSets/Main", "ImageSets/Segmentation"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    ids = [f"{i:06d}" for i in range(num_trainval + num_test)]
    for i, image_id in enumerate(ids):
        scene = render_scene(np.random.default_rng([seed, i]), size=image_size)
        ok, jpg = cv2.imencode(".jpg", scene.image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
        if not ok:
            raise RuntimeError(f"JPEG encoding failed for image {image_id}")
        (out / "JPEGImages" / f"{image_id}.jpg").write_bytes(jpg.tobytes())
        (out / "Annotations" / f"{image_id}.xml").write_text(_annotation_xml(image_id, scene), encoding="utf-8")
        save_label_png(out / "SegmentationClass" / f"{image_id}.png", scene.label_map)
    trainval = "".join(f"{i}\n" for i in ids[:num_trainval])
    test = "".join(f"{i}\n" for i in ids[num_trainval:])
    for rel, text in (("Main/trainval", trainval), ("Main/test", test), ("Segmentation/train", trainval),
                      ("Segmentation/val", test), ("Segmentation/trainval", trainval), ("Segmentation/test", test)):
        (out / "ImageSets" / f"{rel}.txt").write_text(text, encoding="utf-8")
    (out / _COMPLETE).write_text(f"version {EMBEDDED_VERSION}\n", encoding="utf-8")


def build_embedded_dataset(
    root: str | os.PathLike[str] | None = None,
    seed: int = 0,
    num_trainval: int = 300,
    num_test: int = 100,
    image_size: int = 160,
) -> Path:
    """Writes (or reuses) the embedded dataset and returns its VOC-layout folder.

    Args:
        root: cache folder (default :func:`default_cache_dir`); the dataset goes in a subfolder
            named after the version, seed and sizes.
        seed: generation seed.
        num_trainval: images in ``trainval`` (detection) / ``train`` (segmentation).
        num_test: images in ``test`` / ``val``.
        image_size: side of the square images in pixels.

    Returns:
        The folder holding ``Annotations/``, ``JPEGImages/``, ``ImageSets/`` and ``SegmentationClass/``.
    """
    checks = (("num_trainval", num_trainval, 1), ("num_test", num_test, 1), ("image_size", image_size, 48))
    for name, value, low in checks:
        if not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    base = Path(root) if root is not None else default_cache_dir()
    final = base / f"embedded-v{EMBEDDED_VERSION}-seed{seed}-{num_trainval}+{num_test}-{image_size}px"
    if (final / _COMPLETE).is_file():
        return final
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=base))
    try:
        _write_layout(tmp, seed, num_trainval, num_test, image_size)
        if final.exists() and not (final / _COMPLETE).is_file():
            shutil.rmtree(final)  # a leftover that never completed
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / _COMPLETE).is_file():  # lost a race to a writer that did finish: fine
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final
