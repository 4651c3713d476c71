"""VOC label PNGs: palette images whose pixel values are class indices (255 = ignore/border).

Shape shorthand: H, W = image height and width.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from visiontasks.errors import InputError
from visiontasks.io import atomic_write

__all__ = ["voc_colormap", "save_label_png", "read_label_png"]


def voc_colormap(n: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map (``VOClabelcolormap.m``): bits of the index interleaved into RGB.

    Args:
        n: number of entries.

    Returns:
        (n, 3) uint8; entry 0 is black, 1 is (128, 0, 0), 255 is (224, 224, 192).
    """
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap


def save_label_png(path: str | os.PathLike[str], mask: np.ndarray | torch.Tensor) -> Path:
    """Writes a label map as a VOC palette PNG, atomically (temporary file, then ``os.replace``).

    Args:
        path: destination ``.png``; its folder is created.
        mask: (H, W) integer label map with values in 0..255.

    Returns:
        ``path`` as a Path.
    """
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {mask.shape!r}")
    if mask.size and (mask.min() < 0 or mask.max() > 255):
        raise ValueError(f"mask values must lie in 0..255, got range {(int(mask.min()), int(mask.max()))!r}")
    img = Image.fromarray(mask.astype(np.uint8), mode="P")
    img.putpalette(voc_colormap().tobytes())
    with atomic_write(path) as f:
        img.save(f, format="PNG")
    return Path(path)


def read_label_png(path: str | os.PathLike[str]) -> np.ndarray:
    """Reads the palette indices of a label PNG (not its colours).

    Args:
        path: a palette ("P") or greyscale ("L") PNG.

    Returns:
        (H, W) uint8 label map.

    Raises:
        InputError: the file is missing, not an image, or an RGB image (colours are not labels).
    """
    try:
        with Image.open(path) as img:
            if img.mode not in ("P", "L"):
                raise InputError(path, f"label PNG must be a palette (P) or greyscale (L) image, found mode {img.mode}")
            return np.array(img)
    except FileNotFoundError:
        raise InputError(path, "label PNG not found") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        # ValueError ("Truncated IHDR chunk"), SyntaxError (a broken chunk), a bomb: tests/test_fuzz_files.py
        raise InputError(path, f"cannot read label PNG ({exc})".split("\n")[0]) from None
