"""DeconvNet's two-stage training (Noh, Hong & Han, ICCV 2015, §3.2 / §4.1) as training stages.

What the released code runs (HyeonwooNoh/DeconvNet ``training/``):

* **Stage 1, object-centred crops.** ``001_stage_1/stage_1_train.prototxt`` l. 3-22 reads
  pre-cropped object examples (``VOC_OBJECT``, downloaded by ``data/get_data.sh`` l. 5; the script
  that cropped them is not released), resizes each to 250×250 (``new_width/new_height: 250``) and
  takes a random 224×224 crop with a horizontal flip (``crop_size: 224``, ``mirror: true``); pixels
  labelled 255 are ignored by the loss (l. 413-420). ``solver.prototxt``: lr 0.01, step ×0.1 at
  9000, 20000 iterations, batch 8 × ``iter_size`` 8 = 64. The paper: each crop is the object's
  box enlarged 1.2 times, the object centred.
* **Stage 2, harder examples**, from stage 1's weights (``002_stage_2/start_train.sh`` l. 4):
  ``WINDOW_SEG_DATA`` windows of the full training images (``stage_2_train.prototxt`` l. 3-22),
  the same 250 → 224 crops; 40000 iterations, step at 10000. The windows are object proposals
  that overlap the ground truth (paper §4.1); HyeonwooNoh/caffe's ``window_seg_data_layer.cpp``
  pads a window that leaves the image with black pixels and label 255.

What we run:

* :class:`ObjectCropStage` (``stage1``): each sample is one ground-truth object of a training
  image, picked at random — SBD's instances where the dataset has them, otherwise each connected
  region of one class in the mask — its box enlarged ×1.2 about the centre
  (:func:`~visiontasks.segmentation.instance_wise.enlarge_windows`, as at inference), cropped
  (outside the image: black pixels, label 255, as the window layer), resized to 250×250 (image
  bilinear, labels nearest), a random 224×224 crop and a flip with probability 0.5. Inside the crop
  every pixel keeps its ground-truth label (other objects included): the released window layer
  does so, and the stage-1 crop script is not released. Its checkpoint and logs go to ``stage1/``.
* ``stage2``, from stage 1's weights, one of two kinds (``stage2.windows``):
  ``full`` — :class:`FullImageStage`, SGD on the ``data:`` section's full training images (random
  ``data.crop_size`` crops); ``proposals`` — the paper's: selective search windows that overlap a
  ground-truth object (IoU >= ``min_iou``), cropped as in stage 1
  (:class:`~visiontasks.segmentation.deconvnet_windows.ProposalWindowStage`, windows cached in
  ``stage2_windows/``).

Both stages use the ``train:`` section's optimiser and learning-rate schedule, each from a fresh
solver as the released scripts; stage 1 runs ``stages.stage1.max_iters`` iterations, stage 2
``train.max_iters`` (a ``cosine`` schedule keeps its period ``train.max_iters`` in stage 1 too).

Resuming (``--resume``): stage 1 is skipped once ``stages.json`` records it done, otherwise it
continues from ``stage1/checkpoint_last.pt``; stage 2 continues from ``checkpoint_last.pt``, or
starts from stage 1's weights when it has none yet (with proposal windows it proposes only on the
images ``stage2_windows/`` does not hold yet).

Shape shorthand: H×W image, S the resize (250), C the crop (224), K classes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy import ndimage
from torch.utils.data import Dataset

from visiontasks.engine.stages import SGDStage, Stage, StageContext
from visiontasks.errors import InputError
from visiontasks.segmentation.common import load_matching_weights
from visiontasks.segmentation.instance_wise import enlarge_windows, window_slices

__all__ = ["ObjectCrops", "ObjectCropStage", "FullImageStage", "object_boxes", "crop_sample", "parse_stages",
           "attach_stages", "STAGE1_DEFAULTS", "STAGE2_PROPOSAL_DEFAULTS"]

#: Stage 1's settings besides ``max_iters`` (paper / released prototxt; see the module docstring).
STAGE1_DEFAULTS: dict[str, Any] = {"enlarge": 1.2, "resize": 250, "crop_size": 224, "hflip_prob": 0.5,
                                   "min_pixels": 1}
#: Stage 2 on proposal windows (``windows: proposals``): IoU threshold (ours; the paper says
#: "sufficiently overlapped"), proposals per image, then as stage 1.
STAGE2_PROPOSAL_DEFAULTS: dict[str, Any] = {"min_iou": 0.5, "num_proposals": 2000, "enlarge": 1.2, "resize": 250,
                                            "crop_size": 224, "hflip_prob": 0.5}
_STAGE2_WINDOWS = ("full", "proposals")


def object_boxes(mask: torch.Tensor, instances: torch.Tensor | None = None, min_pixels: int = 1) -> torch.Tensor:
    """Inclusive ``xyxy`` boxes of the ground-truth objects of one mask.

    Args:
        mask: (H, W) int64 class labels, 0 background, 255 ignored.
        instances: (H, W) instance ids (0 = none, 255 ignored), e.g. SBD's ``inst``; without it each
            connected (8-neighbour) region of one class counts as an object.
        min_pixels: objects with fewer pixels are dropped.

    Returns:
        (N, 4) int64 boxes, in row-major order of their first pixel within each class / id.
    """
    m = mask.cpu().numpy()
    if instances is not None:
        ids = instances.cpu().numpy()
        regions = [(ids == i) for i in np.unique(ids) if i not in (0, 255)]
    else:
        regions = []
        for c in np.unique(m):
            if c in (0, 255):
                continue
            labels, n = ndimage.label(m == c, structure=np.ones((3, 3), dtype=bool))
            regions.extend(labels == k for k in range(1, n + 1))
    boxes = []
    for region in regions:
        if region.sum() < min_pixels:
            continue
        ys, xs = np.nonzero(region)
        boxes.append([xs.min(), ys.min(), xs.max(), ys.max()])
    return torch.tensor(boxes, dtype=torch.int64).reshape(-1, 4)


class ObjectCrops(Dataset):
    """Stage 1's samples: one object of image ``i``, centred, enlarged, resized, randomly cropped.

    Args:
        base: a segmentation dataset without transforms: ``base[i] -> (image (3, H, W) float in
            [0, 1], {"mask": (H, W) int64, ...})``; ``base.get_instances(i)`` (SBD) is used when it works.
        enlarge, resize, crop_size, hflip_prob, min_pixels: see :data:`STAGE1_DEFAULTS`.

    ``crops[i] -> (image (3, C, C), {"mask": (C, C) int64, "image_id", "window": (4,) int64})``.
    An image without objects gives a crop of the whole image.
    """

    def __init__(self, base: Dataset, enlarge: float = 1.2, resize: int = 250, crop_size: int = 224,
                 hflip_prob: float = 0.5, min_pixels: int = 1) -> None:
        self.base, self.enlarge, self.resize, self.crop_size = base, enlarge, resize, crop_size
        self.hflip_prob, self.min_pixels = hflip_prob, min_pixels

    def __len__(self) -> int:
        return len(self.base)

    def _instances(self, index: int) -> torch.Tensor | None:
        get = getattr(self.base, "get_instances", None)
        if get is None:
            return None
        try:
            return torch.as_tensor(get(index)["instance_mask"])
        except (ValueError, KeyError):  # e.g. an image of the union that comes from VOC, not SBD
            return None

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        image, target = self.base[index]
        mask = target["mask"]
        h, w = mask.shape
        boxes = object_boxes(mask, self._instances(index), self.min_pixels)
        if len(boxes):
            box = boxes[int(torch.randint(len(boxes), ()))]
            window = enlarge_windows(box[None].float(), self.enlarge)[0]
        else:
            window = torch.tensor([0, 0, w - 1, h - 1])
        img, lab = crop_sample(image, mask, window, self.resize, self.crop_size, self.hflip_prob)
        return img, {"mask": lab, "image_id": target.get("image_id", index), "window": window}


def crop_sample(image: torch.Tensor, mask: torch.Tensor, window: torch.Tensor, resize: int, crop_size: int,
                hflip_prob: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A training sample from one window: crop, resize to S×S, random C×C crop, random flip.

    Outside the image the crop is black with label 255 (HyeonwooNoh/caffe
    ``window_seg_data_layer.cpp``: ``copyMakeBorder`` with 0 and ``ignore_label``); the image is
    resized bilinearly and the labels by nearest neighbour, as that layer.

    Args:
        image: (3, H, W) float in [0, 1].
        mask: (H, W) int64 labels.
        window: (4,) int64 inclusive ``xyxy`` window (may leave the image).
        resize: S.
        crop_size: C <= S.
        hflip_prob: probability of a horizontal flip.

    Returns:
        ``(image (3, C, C), mask (C, C))``.
    """
    h, w = mask.shape
    x1, y1, x2, y2 = (int(v) for v in window)
    img = image.new_zeros((3, y2 - y1 + 1, x2 - x1 + 1))
    lab = mask.new_full((y2 - y1 + 1, x2 - x1 + 1), 255)
    parts = window_slices((x1, y1, x2, y2), h, w)
    if parts is not None:
        rows, cols, wrows, wcols = parts
        img[:, wrows, wcols] = image[:, rows, cols]
        lab[wrows, wcols] = mask[rows, cols]
    s, c = resize, crop_size
    img = F.interpolate(img[None], size=(s, s), mode="bilinear", align_corners=False, antialias=True)[0]
    lab = F.interpolate(lab[None, None].float(), size=(s, s), mode="nearest")[0, 0].long()
    top, left = int(torch.randint(s - c + 1, ())), int(torch.randint(s - c + 1, ()))
    img, lab = img[:, top:top + c, left:left + c], lab[top:top + c, left:left + c]
    if float(torch.rand(())) < hflip_prob:
        img, lab = img.flip(-1), lab.flip(-1)
    return img.contiguous(), lab.contiguous()


def _positive_int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value < 1:
        raise InputError(key, f"must be a positive integer, got {value!r}")
    return int(value)


def _check_crop_keys(prefix: str, d: dict[str, Any]) -> None:
    """Checks (and makes int) ``resize``, ``crop_size``, ``enlarge``, ``hflip_prob`` of a stage's settings."""
    for key in ("resize", "crop_size"):
        d[key] = _positive_int(f"{prefix}.{key}", d[key])
    if d["crop_size"] > d["resize"]:
        raise InputError(f"{prefix}.crop_size", f"{d['crop_size']} exceeds resize {d['resize']}")
    if isinstance(d["enlarge"], bool) or not isinstance(d["enlarge"], (int, float)) or d["enlarge"] <= 0:
        raise InputError(f"{prefix}.enlarge", f"must be a number > 0, got {d['enlarge']!r}")
    p = d["hflip_prob"]
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
        raise InputError(f"{prefix}.hflip_prob", f"must lie in [0, 1], got {p!r}")


def parse_stages(stages: Any) -> dict[str, dict[str, Any]]:
    """Validates ``model.stages``: ``{"stage1": {"max_iters", ...}, "stage2": {"windows": "full" | "proposals", ...}}``.

    Returns:
        ``{"stage1": {max_iters, enlarge, resize, crop_size, hflip_prob, min_pixels}, "stage2": {windows, ...}}``
        with the defaults filled in (:data:`STAGE1_DEFAULTS`, :data:`STAGE2_PROPOSAL_DEFAULTS`).

    Raises:
        InputError: one line naming the first bad key (``model.stages.stage2``: missing, ...).
    """
    if not isinstance(stages, dict):
        raise InputError("model.stages", f"must be a mapping with stage1 and stage2, got {stages!r}")
    for key in stages:
        if key not in ("stage1", "stage2"):
            raise InputError(f"model.stages.{key}", "unknown stage (the two stages are stage1 and stage2)")
    for key, what in (("stage1", "object-centred crops, e.g. {max_iters: 20000}"),
                      ("stage2", "full images, e.g. {windows: full}")):
        if not isinstance(stages.get(key), dict):
            problem = "missing" if stages.get(key) is None else f"must be a mapping, got {stages[key]!r}"
            raise InputError(f"model.stages.{key}", f"{problem} (the {what})")
    one = dict(stages["stage1"])
    for key in one:
        if key not in ("max_iters", *STAGE1_DEFAULTS):
            raise InputError(f"model.stages.stage1.{key}", f"unknown key (known: max_iters, {', '.join(STAGE1_DEFAULTS)})")
    if "max_iters" not in one:
        raise InputError("model.stages.stage1.max_iters", "missing (stage 1's iterations; the released solver: 20000)")
    out1 = {**STAGE1_DEFAULTS, **one}
    for key in ("max_iters", "min_pixels"):
        out1[key] = _positive_int(f"model.stages.stage1.{key}", out1[key])
    _check_crop_keys("model.stages.stage1", out1)
    two = dict(stages["stage2"])
    if two.get("windows") not in _STAGE2_WINDOWS:
        raise InputError("model.stages.stage2.windows",
                         f"must be 'full' (the full training images) or 'proposals' (the paper's proposal "
                         f"windows), got {two.get('windows')!r}")
    known = ("windows",) if two["windows"] == "full" else ("windows", *STAGE2_PROPOSAL_DEFAULTS)
    for key in two:
        if key not in known:
            raise InputError(f"model.stages.stage2.{key}", f"unknown key with windows: {two['windows']} "
                                                           f"(known: {', '.join(known)})")
    if two["windows"] == "proposals":
        two = {**STAGE2_PROPOSAL_DEFAULTS, **two}
        _check_crop_keys("model.stages.stage2", two)
        for key in ("num_proposals",):
            two[key] = _positive_int(f"model.stages.stage2.{key}", two[key])
        iou = two["min_iou"]
        if isinstance(iou, bool) or not isinstance(iou, (int, float)) or not 0 < iou <= 1:
            raise InputError("model.stages.stage2.min_iou", f"must lie in (0, 1], got {iou!r}")
    return {"stage1": out1, "stage2": two}


class ObjectCropStage(Stage):
    """Stage 1: SGD on :class:`ObjectCrops` of the training split, into ``stage1/``.

    The engine's Trainer (``ctx.make_trainer``) is pointed at the crops, ``stage1/`` and the
    stage's length; everything else (optimiser, schedule, batch) is the ``train:`` section's.
    """

    name = "stage1_object_crops"
    folders = ("stage1",)
    skip_when_done = True
    needs_trainer = True

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = dict(settings)

    def run(self, ctx: StageContext) -> dict[str, Any]:
        from visiontasks.data import build_dataset

        s = self.settings
        data = ctx.cfg["data"]
        base = build_dataset(data, data["train_split"], train=False, task="segmentation")
        crops = ObjectCrops(base, s["enlarge"], s["resize"], s["crop_size"], s["hflip_prob"], s["min_pixels"])
        trainer = ctx.make_trainer(eval_fn=None)
        trainer.train_dataset = crops
        trainer.out_dir = Path(ctx.out_dir) / self.folders[0]
        trainer.checkpoint_path = trainer.out_dir / "checkpoint_last.pt"
        trainer.max_iters = s["max_iters"]
        if ctx.resume and trainer.checkpoint_path.is_file():
            trainer.resume()
        threads, previous = ctx.extra.get("sgd_threads"), torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
        try:
            trainer.train()
        finally:
            torch.set_num_threads(previous)
        return {"iterations": trainer.iteration, "checkpoint": f"{self.folders[0]}/checkpoint_last.pt"}


class FullImageStage(SGDStage):
    """Stage 2: SGD on the full training images (the ``data:`` section), from stage 1's weights."""

    def __init__(self) -> None:
        super().__init__(name="stage2_full_images", evaluate=True)

    def run(self, ctx: StageContext) -> dict[str, Any]:
        own = Path(ctx.out_dir) / "checkpoint_last.pt"
        first = Path(ctx.out_dir) / ObjectCropStage.folders[0] / "checkpoint_last.pt"
        if not (ctx.resume and own.is_file()) and first.is_file():
            load_matching_weights(ctx.model, first)  # a fresh stage 2 (or one killed before its first checkpoint)
        return super().run(ctx)


def attach_stages(model: nn.Module, stages: Any) -> nn.Module:
    """Gives ``model`` the two stages (``model.training_stages()``), validating ``stages`` first.

    With ``stage2.windows: proposals`` the windows come from selective search (``num_proposals``
    boxes per training image).
    """
    settings = parse_stages(stages)

    def training_stages() -> list[Stage]:
        two = settings["stage2"]
        if two["windows"] == "full":
            return [ObjectCropStage(settings["stage1"]), FullImageStage()]
        from visiontasks.segmentation.deconvnet_windows import ProposalWindowStage
        from visiontasks.segmentation.instance_wise import selective_search_proposer

        return [ObjectCropStage(settings["stage1"]),
                ProposalWindowStage(two, selective_search_proposer(two["num_proposals"]))]

    model.training_stages = training_stages
    return model
