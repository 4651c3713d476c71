"""YOLOv1's training augmentation (§2.2): darknet's crop jitter then its HSV jitter.

The transforms are generic and live in :mod:`visiontasks.data.jitter`; the data pipeline builds
the same chain from ``data.jitter`` / ``data.saturation`` / ``data.exposure`` (adding the
horizontal flip, which darknet also applies, and the box sanitising). This is the paper's recipe
with its values, for use outside a config.

Shape shorthand: none (composition only).
"""
from __future__ import annotations

from torchvision.transforms import v2

from visiontasks.data.jitter import RandomHSV, RandomJitterCrop

__all__ = ["yolo_train_transforms"]


def yolo_train_transforms(jitter: float = 0.2, saturation: float = 1.5, exposure: float = 1.5) -> v2.Compose:
    """The paper's augmentation: :class:`RandomJitterCrop` (±20 %) then :class:`RandomHSV` (×1.5).

    Args:
        jitter: largest offset of each crop side as a fraction of the image side.
        saturation: largest factor on S.
        exposure: largest factor on V.

    Returns:
        A ``v2.Compose`` of the two.
    """
    return v2.Compose([RandomJitterCrop(jitter), RandomHSV(saturation, exposure)])
