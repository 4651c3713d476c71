"""How FCN and the later VOC papers combine SBD's lists with VOC's: the ``seg11valid`` and ``train_aug``
splits of :class:`visiontasks.data.sbd.SBDSegmentation`, computed from the list files on disk.

Splits of ``SBDSegmentation`` (``root`` = SBD's ``dataset`` folder, ``voc_root`` = a VOC-layout folder):

* ``train`` / ``val`` / any ``<name>``: the ids of ``root/<name>.txt``, read from SBD.
* ``voc:<name>``: the ids of ``voc_root/ImageSets/Segmentation/<name>.txt``, read from VOC (e.g.
  ``voc:val``, the VOC2012 val that ``train_aug`` is evaluated on).
* ``seg11valid``, FCN's validation set: VOC2011 segmentation val minus SBD train, 736 images
  (fcn.berkeleyvision.org ``data/pascal/README.md`` l. 9-14: "VOC 2011 segval intersects with SBD
  train … We train on the 8,498 images of SBD train. We validate on the non-intersecting set defined
  in the included seg11valid.txt", a 736-line list; ``README.md`` l. 38, "the split defined by the
  paper in footnote 7"; ``voc_layers.py`` l. 140; vlfeat/matconvnet-fcn
  @b5f3835 ``vocSetupAdditionalSegmentations.m`` l. 23-25, its default "V = PV \\ BT"). Read from
  ``voc_root/ImageSets/Segmentation/seg11valid.txt`` when that file exists, else computed by
  :func:`seg11valid_ids` from ``voc_root``'s ``val.txt`` (VOC2011) and ``root/train.txt``. Images
  and masks come from VOC (``voc-fcn8s/net.py`` l. 18-23, 94: it evaluates seg11valid on VOC2011's
  JPEGs and PNGs).
* ``train_aug``: (SBD train ∪ SBD val ∪ VOC train) − VOC val (:func:`train_aug_ids`), with
  ``voc_root`` = VOC2012: the "augmented" set of 10,582 images on which the VOC2012 papers after FCN
  train (DeconvNet and the dilated networks train on VOC2012 augmented with SBD; their repositories
  ship no list: HyeonwooNoh/DeconvNet ``data/imagesets/README.md`` is a placeholder, fyu/dilation
  ``docs/training.md`` takes the user's lists). The rule is matconvnet-fcn's merge mode 1
  (``vocSetupAdditionalSegmentations.m`` l. 15-34: S = PT + PV + BT + BV, V = PV, T = S \\ V).
  Images of VOC train keep VOC's PNG (with its 255 borders), the others are read from SBD, as that
  merge's code does (l. 121-128: copy the PASCAL PNG when the image has one, else write the
  Berkeley ``Segmentation``; its comment at l. 102-103 says the reverse, the code decides).

``tools/eval.py seg --root VOC2011 --split seg11valid`` reads ``ImageSets/Segmentation/seg11valid.txt``;
without the reference's file, write the computed list there first::

    python -c "import sys; from visiontasks.data.sbd import SBDSegmentation as S; \\
        print(*S(sys.argv[1], 'seg11valid', voc_root=sys.argv[2]).ids, sep='\\n')" \\
        benchmark_RELEASE/dataset VOC2011 > seg11valid.txt && mv seg11valid.txt VOC2011/ImageSets/Segmentation/

Shape shorthand: none (image ids only).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Iterable, Sequence

from visiontasks.errors import InputError

__all__ = ["read_id_list", "seg11valid_ids", "train_aug_ids", "warn_size", "SEG11VALID_SIZE", "TRAIN_AUG_SIZE"]

#: Images in the reference ``seg11valid.txt`` and in the VOC2012 train_aug list (with the full lists).
SEG11VALID_SIZE = 736
TRAIN_AUG_SIZE = 10582
_FULL = {"voc11_val": 1111, "voc12_train": 1464, "voc12_val": 1449, "sbd_train": 8498, "sbd_val": 2857}


def read_id_list(path: str | os.PathLike[str], what: str = "split") -> list[str]:
    """The ids of a list file (first word of each non-blank line).

    Raises:
        InputError: the file is missing, a folder, or not UTF-8 text.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError(path, f"{what} list not found") from None
    except IsADirectoryError:
        raise InputError(path, f"is a folder, not a {what} list") from None
    except UnicodeDecodeError:
        raise InputError(path, f"{what} list is not UTF-8 text") from None
    return [line.split()[0] for line in lines if line.strip()]


def seg11valid_ids(voc11_val: Sequence[str], sbd_train: Iterable[str]) -> list[str]:
    """FCN's seg11valid: VOC2011 segmentation val minus SBD train, in ``voc11_val``'s order."""
    train = set(sbd_train)
    return [i for i in dict.fromkeys(voc11_val) if i not in train]


def train_aug_ids(sbd_train: Sequence[str], sbd_val: Sequence[str], voc_train: Sequence[str],
                  exclude: Iterable[str]) -> list[str]:
    """(SBD train ∪ SBD val ∪ VOC train) − ``exclude`` (the evaluation split, VOC val), duplicates once.

    Order: SBD train, then the new ids of SBD val, then those of VOC train.
    """
    dropped = set(exclude)
    return [i for i in dict.fromkeys([*sbd_train, *sbd_val, *voc_train]) if i not in dropped]


def warn_size(name: str, got: int, want: int, sizes: dict[str, int]) -> None:
    """Warns when the full reference lists give another count than the reference's."""
    if all(len_ == _FULL[key] for key, len_ in sizes.items()) and got != want:
        warnings.warn(f"{name}: {got} images from the full lists, the reference has {want}", stacklevel=3)
