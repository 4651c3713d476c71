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
  (:func:`~visiontasks.segmentation.deconvnet.instance_wise.enlarge_windows`, as at inference), cropped
  (outside the image: black pixels, label 255, as the window layer), resized to 250×250 (image
  bilinear, labels nearest), a random 224×224 crop and a flip with probability 0.5. Inside the crop
  every pixel keeps its ground-truth label (other objects included): the released window layer
  does so, and the stage-1 crop script is not released. Its checkpoint and logs go to ``stage1/``.
* ``stage2``, from stage 1's weights, one of two kinds (``stage2.windows``):
  ``full`` — :class:`FullImageStage`, SGD on the ``data:`` section's full training images (random
  ``data.crop_size`` crops); ``proposals`` — the paper's: selective search windows that overlap a
  ground-truth object (IoU >= ``min_iou``), cropped as in stage 1
  (:class:`~visiontasks.segmentation.deconvnet.windows.ProposalWindowStage`, windows cached in
  ``stage2_windows/``).

Both stages use the ``train:`` section's optimiser and learning-rate schedule, each from a fresh
solver as the released scripts; stage 1 runs ``stages.stage1.max_iters`` iterations, stage 2
``train.max_iters`` (a ``cosine`` schedule keeps its period ``train.max_iters`` in stage 1 too).

Resuming (``--resume``): stage 1 is skipped once ``stages.json`` records it done, otherwise it
continues from ``stage1/checkpoint_last.pt``; stage 2 continues from ``checkpoint_last.pt``, or
starts from stage 1's weights when it has none yet (with proposal windows it proposes only on the
images ``stage2_windows/`` does not hold yet).

The samples (object boxes, crops) are :mod:`visiontasks.segmentation.deconvnet.crops`.

Shape shorthand: none (orchestration; samples in ``deconvnet_crops``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch.nn as nn

from visiontasks.engine.stages import SGDStage, Stage, StageContext, train_resumed
from visiontasks.errors import InputError
from visiontasks.segmentation.common import load_matching_weights
from visiontasks.segmentation.deconvnet.crops import ObjectCrops, crop_sample, object_boxes

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
                      ("stage2", "proposal windows or full images, e.g. {windows: proposals}")):
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
        train_resumed(trainer, ctx)
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
        from visiontasks.segmentation.deconvnet.windows import ProposalWindowStage
        from visiontasks.segmentation.deconvnet.instance_wise import selective_search_proposer

        return [ObjectCropStage(settings["stage1"]),
                ProposalWindowStage(two, selective_search_proposer(two["num_proposals"]))]

    model.training_stages = training_stages
    return model
