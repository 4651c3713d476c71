"""Faster R-CNN's 4-step alternating training (Ren et al. 2015, §3.2) as training stages.

``model: {name: faster_rcnn, training: alternating, stages: {rpn1: {...}, fast_rcnn1: {...},
rpn2: {...}, fast_rcnn2: {...}}}`` replaces the one SGD stage of approximate joint training (the
default, ``training: joint``) with six stages, each one run-directory folder of its own:

1. ``rpn1``: from the built model ("ImageNet"), trains backbone + RPN on the ground truth;
2. ``proposals1``: ``rpn1``'s network (eval mode) proposes every training image once;
3. ``fast_rcnn1``: from the built model again (a separate network), trains backbone + RoI head
   on ``proposals1``;
4. ``rpn2``: from ``fast_rcnn1``'s network, trains the RPN with the backbone frozen;
5. ``proposals2``: ``rpn2``'s network proposes every training image;
6. ``fast_rcnn2``: from ``rpn2``'s network with the predictor re-initialised, trains the RoI
   head (backbone and RPN frozen) on ``proposals2``; evaluates; its weights are the detector.

As py-faster-rcnn's ``tools/train_faster_rcnn_alt_opt.py`` (l. 228 stage 1 RPN "init from
ImageNet model", l. 260 stage 1 Fast R-CNN "init from ImageNet model", l. 278 stage 2 RPN "init
from stage 1 Fast R-CNN model", l. 310 stage 2 Fast R-CNN "init from stage 2 RPN R-CNN model",
l. 327 the final model "just a copy of the last stage"; l. 80 80k/40k/80k/40k iterations, l. 114
and 180 one image per RPN batch, two per Fast R-CNN batch), with what its prototxts carry between
the steps
(``models/pascal_voc/ZF/faster_rcnn_alt_opt/``):

- ``stage1_fast_rcnn_train.pt`` l. 303-344 keeps the RPN layers as lr-0 "dummy layers" whose
  weights come from their fillers (ImageNet has none), so ``rpn2`` starts from a freshly
  initialised RPN head, not from ``rpn1``'s: here the built model's initial RPN head.
- ``stage1_rpn_train.pt`` / ``stage2_rpn_train.pt`` l. 269-310 carry fc6/fc7 (lr 0) but not
  ``cls_score``/``bbox_pred``, so ``fast_rcnn2`` keeps ``fast_rcnn1``'s box head (fc6/fc7) and
  starts its predictor afresh.
- ``stage2_rpn_train.pt`` / ``stage2_fast_rcnn_train.pt`` l. 18-165 set ``lr_mult: 0`` on every
  shared conv: both second-round steps freeze the backbone (``requires_grad = False``, eval mode),
  so the final detector's RPN and RoI head share one backbone exactly. Parameters the backbone
  froze itself (VGG16's conv1-2) stay frozen in every step.
- ``rpn_generate`` (l. 142-151: ``RPN_PRE_NMS_TOP_N = -1``, ``RPN_POST_NMS_TOP_N = 2000``, no
  flip; the data path flips the stored boxes with the image): the proposal stages keep every anchor before NMS
  and ``rpn.post_nms_top_n_train`` after it, at the test-time input size.

Each stage resumes: an SGD step from ``<stage>/checkpoint_last.pt`` (the weights it starts from
are rebuilt from the earlier stages' checkpoints, so a step killed before its first checkpoint
starts cleanly again), a proposal stage per image (files present are kept). The last step
evaluates and copies its checkpoint to the run's ``checkpoint_last.pt``. Each ``stages`` entry is
a ``train:`` override for that step (``max_iters`` required; ``lr``, ``steps``, … optional).
Single-process only (the step losses bypass DDP's forward).

Shape shorthand: B = images, R = proposals of an image.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from visiontasks.engine.distributed import is_dist, is_main_process
from visiontasks.engine.preempt import polled
from visiontasks.engine.stages import Stage, StageContext, train_resumed
from visiontasks.errors import InputError

__all__ = ["TRAINING_MODES", "ALTERNATING_STEPS", "parse_alternating", "attach_alternating", "alternating_stages",
           "rpn_step_losses", "fast_rcnn_step_losses"]

TRAINING_MODES = ("joint", "alternating")
#: The four SGD steps of §3.2, the keys ``model.stages`` must hold.
ALTERNATING_STEPS = ("rpn1", "fast_rcnn1", "rpn2", "fast_rcnn2")
#: ``train:`` keys a step may override.
STEP_KEYS = ("max_iters", "lr", "steps", "schedule", "gamma", "warmup_iters", "warmup_factor", "batch_size",
             "momentum", "weight_decay", "checkpoint_every", "log_every")
CHECKPOINT = "checkpoint_last.pt"


def parse_alternating(training: str, stages: Any) -> dict[str, dict[str, Any]] | None:
    """Validates ``model.training`` and ``model.stages``.

    Returns:
        The four steps' ``train:`` overrides (``None`` for joint training).

    Raises:
        InputError: one line naming the key (``model.training``, ``model.stages.rpn2`` …).
    """
    if training not in TRAINING_MODES:
        raise InputError("model.training", f"must be one of {', '.join(TRAINING_MODES)}, got {training!r}")
    if training == "joint":
        if stages is not None:
            raise InputError("model.stages", "applies to training: alternating only")
        return None
    if not isinstance(stages, Mapping):
        raise InputError("model.stages", f"training: alternating needs a mapping with {', '.join(ALTERNATING_STEPS)}, "
                                         f"got {type(stages).__name__}")
    out = {}
    for step in ALTERNATING_STEPS:
        if step not in stages:
            raise InputError(f"model.stages.{step}", f"missing: alternating training needs the four steps "
                                                     f"{', '.join(ALTERNATING_STEPS)}")
        s = stages[step]
        if not isinstance(s, Mapping):
            raise InputError(f"model.stages.{step}", f"must be a mapping of train: overrides, got {s!r}")
        for key in s:
            if key not in STEP_KEYS:
                raise InputError(f"model.stages.{step}.{key}", f"unknown key (known: {', '.join(STEP_KEYS)})")
        it = s.get("max_iters")
        if isinstance(it, bool) or not isinstance(it, int) or it <= 0:
            raise InputError(f"model.stages.{step}.max_iters", f"must be a positive integer, got {it!r}")
        out[step] = dict(s)
    unknown = sorted(set(stages) - set(ALTERNATING_STEPS))
    if unknown:
        raise InputError(f"model.stages.{unknown[0]}", f"unknown step (the steps: {', '.join(ALTERNATING_STEPS)})")
    return out


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)


def _weigh(det: nn.Module, losses: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    weights = getattr(det, "loss_weights", {})
    return {k: v * weights[k] if k in weights else v for k, v in losses.items()}


def _inputs(det: nn.Module, images: list[torch.Tensor], targets: list[dict]) -> tuple:
    if getattr(det, "backbone_frozen", False):
        det.backbone.eval()  # normalisation statistics stay those of the shared network
    targets, proposals = det.prepare_inputs(images, targets, None)
    original = [(int(i.shape[-2]), int(i.shape[-1])) for i in images]
    batch, targets = det.transform(list(images), targets)
    sizes = [(int(h), int(w)) for h, w in batch.image_sizes]
    return batch, targets, proposals, original, sizes


def rpn_step_losses(model: nn.Module, images: list[torch.Tensor], targets: list[dict]) -> dict[str, torch.Tensor]:
    """An RPN step's losses (``loss_objectness``, ``loss_rpn_box_reg``): backbone → RPN only."""
    det = _unwrap(model)
    batch, targets, _, original, sizes = _inputs(det, images, targets)
    scales = det.transform.scale_factors(original, sizes)
    _, losses = det.proposer(batch, det.backbone.feature_maps(batch), targets, None, scales)
    return _weigh(det, losses)


def fast_rcnn_step_losses(model: nn.Module, images: list[torch.Tensor], targets: list[dict]
                          ) -> dict[str, torch.Tensor]:
    """A Fast R-CNN step's losses on the stored proposals (``target["proposals"]``): backbone → RoI head."""
    det = _unwrap(model)
    batch, targets, proposals, original, sizes = _inputs(det, images, targets)
    if proposals is None:
        raise ValueError("a Fast R-CNN step needs target['proposals'] (the proposal stage's folder)")
    proposals = det.transform.resize_proposals(proposals, original, sizes)
    _, losses = det.roi_head(det.backbone.feature_maps(batch), proposals, sizes, targets)
    return _weigh(det, losses)


class _Plan:
    """What the stages share: the built model's weights and its own frozen parameters."""

    def __init__(self, model: nn.Module, steps: dict[str, dict[str, Any]]) -> None:
        self.steps = steps
        self.initial = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        self.trainable = {n: p.requires_grad for n, p in model.named_parameters()}

    def reset(self, model: nn.Module, prefixes: tuple[str, ...]) -> None:
        """Puts the parameters and buffers under ``prefixes`` back to the built model's values."""
        state = {k: v for k, v in self.initial.items() if k.startswith(prefixes)}
        model.load_state_dict(state, strict=False)

    def train_only(self, model: nn.Module, parts: tuple[str, ...]) -> None:
        """Trains the parameters under ``parts`` (those the model trains at all); freezes the rest."""
        for name, p in model.named_parameters():
            p.requires_grad_(self.trainable[name] and name.startswith(parts))
        model.backbone_frozen = not any(p.requires_grad for p in model.backbone.parameters())


def _load_model(model: nn.Module, path: Path, stage: str) -> None:
    from visiontasks.engine.checkpoint import load_checkpoint

    if not path.is_file():
        raise InputError(path, f"not found: stage {stage!r} needs it (run without --resume to start over)")
    model.load_state_dict(load_checkpoint(path)["model"])


class SGDStep(Stage):
    """One SGD step of the alternating schedule into its own folder (see the module docstring)."""

    needs_trainer = True

    def __init__(self, plan: _Plan, name: str, parts: tuple[str, ...], start: Callable[[StageContext], None],
                 losses: Callable, proposals: str | None = None, last: bool = False) -> None:
        self.plan, self.name, self.parts, self.start, self.losses = plan, name, parts, start, losses
        self.proposals, self.last = proposals, last
        self.folders = (name,)
        self.skip_when_done = not last  # the last step re-enters: it reloads the final weights and evaluates

    def run(self, ctx: StageContext) -> dict[str, Any]:
        if is_dist():
            raise ValueError("alternating training runs in one process (its step losses bypass DDP)")
        folder = Path(ctx.out_dir) / self.name
        if not ctx.resume:
            shutil.rmtree(folder, ignore_errors=True)
        self.start(ctx)
        self.plan.train_only(ctx.model, self.parts)
        dataset = ctx.train_dataset
        if self.proposals is not None:
            dataset = _proposal_dataset(ctx, self.proposals)
        trainer = ctx.make_trainer(eval_fn=ctx.eval_fn if self.last else None, out_dir=folder,
                                   train_dataset=dataset, forward_fn=self.losses, **self.plan.steps[self.name])
        try:
            metrics = train_resumed(trainer, ctx)
        finally:
            for p in ctx.model.parameters():
                p.requires_grad_(True)
            ctx.model.backbone_frozen = False
        if self.last:
            from visiontasks.engine.checkpoint import load_checkpoint, save_checkpoint

            if is_main_process():
                save_checkpoint(Path(ctx.out_dir) / CHECKPOINT, load_checkpoint(trainer.checkpoint_path))
            ctx.metrics = metrics
        return {"iterations": trainer.iteration, "checkpoint": f"{self.name}/{CHECKPOINT}"}


def _proposal_params(model: nn.Module, source: str) -> dict[str, Any]:
    rpn = model.proposer
    return {"method": "rpn", "source": f"{source}/{CHECKPOINT}", "pre_nms_top_n": "all",
            "post_nms_top_n": int(rpn.post_nms_top_n[0]), "nms_thresh": float(rpn.nms_thresh),
            "min_size": float(rpn.min_size)}


def _proposal_dataset(ctx: StageContext, folder: str) -> Any:
    from visiontasks.data import build_dataset

    data = {**ctx.cfg["data"], "proposals": str(Path(ctx.out_dir) / folder), "test_proposals": None}
    source = {"proposals1": "rpn1", "proposals2": "rpn2"}[folder]
    return build_dataset(data, data["train_split"], train=True, task="detection",
                         proposal_params=_proposal_params(ctx.model, source))


class ProposalStep(Stage):
    """Writes the RPN's proposals of every training image (``data/proposals.py`` layout) from ``source``."""

    def __init__(self, name: str, source: str) -> None:
        self.name, self.source = name, source
        self.folders = (name,)

    @torch.no_grad()
    def run(self, ctx: StageContext) -> dict[str, Any]:
        from visiontasks.data import build_dataset
        from visiontasks.data.proposals import check_params, proposals_path, write_manifest, write_proposals
        from visiontasks.engine.common import resolve_device

        model = ctx.model
        out = Path(ctx.out_dir) / self.name
        if not ctx.resume:
            shutil.rmtree(out, ignore_errors=True)
        _load_model(model, Path(ctx.out_dir) / self.source / CHECKPOINT, self.name)
        params = _proposal_params(model, self.source)
        if (out / "manifest.json").is_file():
            check_params(out, params, hint="start a fresh run", asker="this run")
        elif is_main_process():
            write_manifest(out, params)
        data = ctx.cfg["data"]
        dataset = build_dataset(data, data["train_split"], train=False, task="detection")
        ids = [str(i) for i in dataset.ids]
        todo = [i for i, image_id in enumerate(ids) if not proposals_path(out, image_id).is_file()]
        device = resolve_device(ctx.device)
        rpn, counts = model.proposer, []
        saved = rpn.pre_nms_top_n, rpn.post_nms_top_n
        rpn.pre_nms_top_n = (saved[0], 10 ** 9)  # every anchor before NMS (py-faster-rcnn's -1)
        rpn.post_nms_top_n = (saved[1][0], saved[1][0])  # the training count after it (2000)
        model.to(device).eval()
        try:
            def kept() -> str:  # what a stop by SIGTERM/SIGINT keeps (engine/preempt.py)
                return f"proposals of {len(ids) - len(todo) + len(counts)} of {len(ids)} images in {out}"

            for i in polled(tqdm(todo if is_main_process() else [], desc=self.name, leave=False), kept):
                image, _ = dataset[i]
                image = image.to(device)
                batch, _ = model.transform([image])
                size = tuple(int(v) for v in batch.image_sizes[0])
                original = (int(image.shape[-2]), int(image.shape[-1]))
                scale = model.transform.scale_factors([original], [size])
                boxes, _ = rpn(batch, model.backbone.feature_maps(batch), None, None, scale)
                boxes = model.transform.postprocess([{"boxes": boxes[0]}], [size], [original])[0]["boxes"]
                write_proposals(out, ids[i], boxes.float().cpu().numpy())
                counts.append(len(boxes))
        finally:
            rpn.pre_nms_top_n, rpn.post_nms_top_n = saved
            model.train()
        return {"images": len(ids), "computed": len(todo),
                "mean_proposals": float(np.mean(counts)) if counts else None}


def attach_alternating(model: nn.Module, steps: dict[str, dict[str, Any]]) -> nn.Module:
    """Gives a Faster R-CNN ``model`` the alternating schedule (``model.training_stages()``; the
    built weights are copied when the stages are asked for, i.e. by training only)."""
    model.backbone_frozen = False
    model.training_stages = lambda: alternating_stages(model, steps)
    return model


def alternating_stages(model: nn.Module, steps: dict[str, dict[str, Any]]) -> list[Stage]:
    """The six stages of the module docstring, sharing a copy of ``model``'s built weights."""
    plan = _Plan(model, steps)
    everything = ("backbone.", "proposer.", "roi_head.")

    def from_init(ctx: StageContext) -> None:
        plan.reset(ctx.model, everything)

    def from_fast_rcnn1(ctx: StageContext) -> None:
        _load_model(ctx.model, Path(ctx.out_dir) / "fast_rcnn1" / CHECKPOINT, "rpn2")

    def from_rpn2(ctx: StageContext) -> None:
        _load_model(ctx.model, Path(ctx.out_dir) / "rpn2" / CHECKPOINT, "fast_rcnn2")
        plan.reset(ctx.model, ("roi_head.predictor.",))

    return [
        SGDStep(plan, "rpn1", ("backbone.", "proposer."), from_init, rpn_step_losses),
        ProposalStep("proposals1", "rpn1"),
        SGDStep(plan, "fast_rcnn1", ("backbone.", "roi_head."), from_init, fast_rcnn_step_losses, "proposals1"),
        SGDStep(plan, "rpn2", ("proposer.",), from_fast_rcnn1, rpn_step_losses),
        ProposalStep("proposals2", "rpn2"),
        SGDStep(plan, "fast_rcnn2", ("roi_head.",), from_rpn2, fast_rcnn_step_losses, "proposals2", last=True),
    ]
