"""What every detector shares, two-stage (R-CNN family) and single-stage (YOLO) alike.

:class:`Detector` holds the parts of the detection contract (docs/CONTRACTS.md, "Models") that
do not depend on the architecture:

- input checks with messages that quote the offending value (:func:`check_inputs`);
- VOC ``difficult`` objects dropped from training targets (py-faster-rcnn's ``USE_DIFF =
  False``; :func:`drop_difficult`);
- per-loss weights (Detectron2's ``loss_weight``): ``loss_weights={"loss_box_reg": 2.0}``
  multiplies that entry of the loss dict; an unknown name is an error at the first step;
- the optimiser convention the paper used (:attr:`Detector.optim_defaults`): Caffe's
  ``bias_lr_mult: 2, bias_decay_mult: 0`` for the R-CNN family, darknet's plain SGD for YOLO;
- precomputed proposals: a detector whose proposer needs external boxes (Fast R-CNN, SPP-net,
  R-CNN) sets :attr:`Detector.proposal_params` (a dict naming the proposal method and its
  parameters, see ``visiontasks.detection.proposals``); :meth:`Detector.propose` computes them
  for a new image, and ``proposals`` may also travel inside the targets (the data path).

Shape shorthand: B = images, G = ground-truth boxes of an image, R = proposals of an image.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

import torch
import torch.nn as nn

__all__ = ["Detector", "check_inputs", "drop_difficult", "proposals_from_targets", "CAFFE_OPTIM", "PLAIN_OPTIM"]

#: Caffe's bias convention of R-CNN, SPP-net and Fast/Faster R-CNN (``bias_lr_mult: 2``, no bias decay).
CAFFE_OPTIM: dict[str, float | None] = {"bias_lr_factor": 2.0, "bias_weight_decay": 0.0}
#: Biases treated like weights (torchvision's references; darknet decays no bias: see yolo.model.DARKNET_OPTIM).
PLAIN_OPTIM: dict[str, float | None] = {"bias_lr_factor": 1.0, "bias_weight_decay": 1.0}


def drop_difficult(target: dict) -> dict:
    """Removes VOC ``difficult`` objects from a training target (boxes, labels and the flag)."""
    difficult = target.get("difficult")
    if difficult is None or not bool(difficult.any()):
        return target
    keep = ~difficult.bool()
    return {**target, "boxes": target["boxes"][keep], "labels": target["labels"][keep], "difficult": difficult[keep]}


def check_inputs(images: Any, targets: Any, proposals: Any = None) -> None:
    """Raises ``ValueError`` quoting the offending value unless the inputs follow the contract.

    Args:
        images: B tensors (3, H, W).
        targets: None or B dicts with ``boxes`` (G, 4) and ``labels`` (G,).
        proposals: None or B tensors (R, 4).
    """
    if not isinstance(images, (list, tuple)) or not images:
        raise ValueError(f"images must be a non-empty list of (3, H, W) tensors, got {type(images).__name__}")
    for img in images:
        if not torch.is_tensor(img) or img.dim() != 3 or img.shape[0] != 3:
            shape = tuple(img.shape) if torch.is_tensor(img) else type(img).__name__
            raise ValueError(f"each image must be a (3, H, W) tensor, got {shape}")
    if targets is not None:
        if len(targets) != len(images):
            raise ValueError(f"got {len(targets)} targets for {len(images)} images")
        for t in targets:
            boxes = t.get("boxes")
            if boxes is None or "labels" not in t:
                raise ValueError(f"each target needs 'boxes' and 'labels', got keys {sorted(t)}")
            if boxes.dim() != 2 or boxes.shape[-1] != 4:
                raise ValueError(f"target boxes must be (G, 4), got shape {tuple(boxes.shape)}")
    if proposals is not None:
        if len(proposals) != len(images):
            raise ValueError(f"got proposals for {len(proposals)} images but {len(images)} images")
        for p in proposals:
            if not torch.is_tensor(p) or p.dim() != 2 or p.shape[-1] != 4:
                shape = tuple(p.shape) if torch.is_tensor(p) else type(p).__name__
                raise ValueError(f"each proposals entry must be an (R, 4) tensor, got {shape}")


def proposals_from_targets(targets: list[dict] | None) -> list[torch.Tensor] | None:
    """The ``proposals`` the data path put into each target (Detectron2's ``proposals`` field), or None."""
    if not targets or not all("proposals" in t for t in targets):
        return None
    return [t["proposals"] for t in targets]


class Detector(nn.Module):
    """Base class of the detectors: subclasses implement ``forward(images, targets, proposals)``.

    Args:
        loss_weights: multiplier per loss name (missing names: 1).
        proposal_params: for detectors fed external proposals, the method and parameters that
            make them (e.g. ``{"method": "selective_search", "mode": "fast"}``); None otherwise.
    """

    #: SGD bias convention of the paper (read by the engine unless the config sets it).
    optim_defaults: Mapping[str, float | None] = CAFFE_OPTIM

    def __init__(self, loss_weights: Mapping[str, float] | None = None,
                 proposal_params: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        weights = dict(loss_weights or {})
        for name, w in weights.items():
            if not isinstance(w, (int, float)) or w < 0:
                raise ValueError(f"loss_weights[{name!r}] must be a number >= 0, got {w!r}")
        self.loss_weights = {k: float(v) for k, v in weights.items()}
        self.proposal_params = dict(proposal_params) if proposal_params is not None else None

    def _score_owner(self) -> nn.Module:
        """The module whose ``score_thresh`` filters the detections (subclasses override)."""
        return self

    @property
    def score_thresh(self) -> float:
        """The test-time score threshold (a preset of ``visiontasks.load_model`` sets it)."""
        return float(self._score_owner().__dict__["score_thresh"])

    @score_thresh.setter
    def score_thresh(self, value: float) -> None:
        if not 0.0 <= float(value) < 1.0:
            raise ValueError(f"score_thresh must be in [0, 1), got {value!r}")
        self._score_owner().__dict__["score_thresh"] = float(value)

    @property
    def needs_proposals(self) -> bool:
        """True when the detector takes precomputed proposals (Fast R-CNN, SPP-net, R-CNN)."""
        return self.proposal_params is not None

    def prepare_inputs(self, images: list[torch.Tensor], targets: list[dict] | None,
                       proposals: list[torch.Tensor] | None) -> tuple[list[dict] | None, list[torch.Tensor] | None]:
        """Checks the inputs, takes proposals from the targets when not given, drops ``difficult``.

        Returns:
            ``(targets, proposals)``: training targets without difficult objects (None in eval
            when none were given) and the proposals (None for detectors that make their own).
        """
        if self.training and targets is None:
            raise ValueError("targets are required in training mode")
        if proposals is None:
            proposals = proposals_from_targets(targets)
        check_inputs(images, targets, proposals)
        if self.needs_proposals and proposals is None:
            raise ValueError(f"{type(self).__name__} needs proposals: pass proposals=[(R, 4) tensor per image], "
                             "put them in each target['proposals'] (data.proposals in a config), or call "
                             "predict() which computes them")
        if self.training:
            targets = [drop_difficult(t) for t in targets]
        return targets, proposals

    def weigh_losses(self, losses: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Applies :attr:`loss_weights` (an unknown name is an error: it would silently do nothing)."""
        unknown = sorted(set(self.loss_weights) - set(losses))
        if unknown:
            raise ValueError(f"loss_weights names {unknown[0]!r}, but this model's losses are {sorted(losses)}")
        return {k: v * self.loss_weights[k] if k in self.loss_weights else v for k, v in losses.items()}

    def make_proposals(self, root: str | os.PathLike[str], split: str, out: str | os.PathLike[str],
                       workers: int = 1) -> Any:
        """Proposes every image of a VOC-layout split into the folder ``out`` with :attr:`proposal_params`.

        What ``data.proposals: auto`` runs (``visiontasks.data.build_dataset(make_proposals=...)``):
        images with a file are skipped, a folder made with other parameters is refused.

        Args:
            root: VOC-layout folder.
            split: ``ImageSets/Main/<split>.txt``.
            out: the proposals folder.
            workers: worker processes.

        Returns:
            The run's ``PrecomputeSummary``.
        """
        if self.proposal_params is None:
            raise ValueError(f"{type(self).__name__} makes its own proposals; it has no proposal_params")
        from visiontasks.detection.proposals.precompute import precompute_proposals

        return precompute_proposals(root, split, self.proposal_params, out, workers=workers,
                                    hint="delete that folder to recompute it")

    @torch.no_grad()
    def propose(self, image: torch.Tensor) -> torch.Tensor:
        """Proposals for one (3, H, W) image in [0, 1], made with :attr:`proposal_params`.

        Returns:
            (R, 4) float32 xyxy in the image's pixels.
        """
        if self.proposal_params is None:
            raise ValueError(f"{type(self).__name__} makes its own proposals; it has no proposal_params")
        from visiontasks.detection.proposals import propose

        boxes = propose(image.detach().cpu(), self.proposal_params)
        return torch.as_tensor(boxes, dtype=torch.float32)
