"""DeconvNet's second training stage on proposal windows, as the paper (§4.1) and the released code.

The paper's stage 2 trains on "candidate proposals sufficiently overlapped with ground-truth
segmentations"; the released ``training/002_stage_2/stage_2_train.prototxt`` l. 3-22 reads them as
``WINDOW_SEG_DATA``: a list of (image, label image, window) lines, each window cropped from the full
image (black / label 255 outside it), resized to 250×250, randomly cropped to 224×224 and flipped
(HyeonwooNoh/caffe ``window_seg_data_layer.cpp``). The window list itself is downloaded, not built
by released code (``data/get_data.sh`` l. 24-27), so the overlap threshold is not known.

:class:`ProposalWindowStage` (``model.stages.stage2.windows: proposals``):

1. proposes on every training image (selective search, ``num_proposals`` boxes, or the model's
   instance-wise proposer), keeps the proposals whose box IoU with a ground-truth object box
   (:func:`~visiontasks.segmentation.deconvnet.crops.object_boxes`) is at least ``min_iou`` (ours:
   0.5), enlarges them ×``enlarge`` and stores them in ``stage2_windows/<index>.npy`` — one file per
   image, written atomically, so a killed stage proposes only on the images it had not reached;
2. trains with SGD on :class:`WindowCrops` (every kept window of every image is one sample) from
   stage 1's weights, ``train.max_iters`` iterations, into ``checkpoint_last.pt`` (resumed from it),
   and evaluates.

Shape shorthand: H×W image, R proposals, N kept windows, S the resize, C the crop.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.ops import box_iou

from visiontasks.engine.distributed import is_main_process
from visiontasks.engine.preempt import polled
from visiontasks.engine.stages import Stage, StageContext, train_resumed
from visiontasks.io import atomic_write
from visiontasks.segmentation.common import load_matching_weights
from visiontasks.segmentation.deconvnet.crops import crop_sample, object_boxes
from visiontasks.segmentation.deconvnet.stages import ObjectCropStage
from visiontasks.segmentation.deconvnet.instance_wise import enlarge_windows

__all__ = ["select_training_windows", "WindowCrops", "ProposalWindowStage", "WINDOWS_FOLDER"]

WINDOWS_FOLDER = "stage2_windows"


def select_training_windows(proposals: Any, gt_boxes: torch.Tensor, min_iou: float = 0.5,
                            enlarge: float = 1.2) -> torch.Tensor:
    """The proposals that overlap a ground-truth object, enlarged to whole-pixel windows.

    Args:
        proposals: (R, 4) xyxy inclusive boxes.
        gt_boxes: (G, 4) inclusive object boxes.
        min_iou: keep a proposal whose IoU with some object box is at least this (inclusive
            pixel areas: ``(x2 - x1 + 1)(y2 - y1 + 1)``).
        enlarge: the windows' enlargement about their centres.

    Returns:
        (N, 4) int64 inclusive windows, in the proposals' order.
    """
    props = torch.as_tensor(np.asarray(proposals, dtype=np.float32)).reshape(-1, 4)
    gt = torch.as_tensor(gt_boxes, dtype=torch.float32).reshape(-1, 4)
    if not len(props) or not len(gt):
        return torch.zeros((0, 4), dtype=torch.int64)
    plus = torch.tensor([0.0, 0.0, 1.0, 1.0])  # inclusive corners -> half-open areas
    keep = box_iou(props + plus, gt + plus).max(dim=1).values >= min_iou
    return enlarge_windows(props[keep], enlarge)


class WindowCrops(Dataset):
    """Every stored window of every image is a sample: ``crops[k] -> (image (3, C, C), {"mask", "window", ...})``.

    Args:
        base: a segmentation dataset without transforms (``base[i] -> (image, {"mask"})``).
        windows: per image of ``base``, its (N_i, 4) int64 windows.
        resize, crop_size, hflip_prob: see :func:`~visiontasks.segmentation.deconvnet.crops.crop_sample`.
    """

    def __init__(self, base: Dataset, windows: list[torch.Tensor], resize: int = 250, crop_size: int = 224,
                 hflip_prob: float = 0.5) -> None:
        self.base, self.resize, self.crop_size, self.hflip_prob = base, resize, crop_size, hflip_prob
        self.index = [(i, w) for i, ws in enumerate(windows) for w in ws]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, dict[str, Any]]:
        i, window = self.index[k]
        image, target = self.base[i]
        img, lab = crop_sample(image, target["mask"], window, self.resize, self.crop_size, self.hflip_prob)
        return img, {"mask": lab, "image_id": target.get("image_id", i), "window": window}


class ProposalWindowStage(Stage):
    """Stage 2 on proposal windows (see the module docstring); evaluates at the end.

    Args:
        settings: ``model.stages.stage2`` as ``parse_stages`` returns it (``min_iou``, ``enlarge``,
            ``resize``, ``crop_size``, ``hflip_prob``).
        proposer: ``proposer(image (3, H, W)) -> (R, 4)`` ranked boxes.
    """

    name = "stage2_proposal_windows"
    folders = (WINDOWS_FOLDER,)
    skip_when_done = False  # SGD resumes inside, from checkpoint_last.pt
    needs_trainer = True

    def __init__(self, settings: dict[str, Any], proposer: Callable[[torch.Tensor], Any]) -> None:
        self.settings, self.proposer = dict(settings), proposer

    def windows(self, base: Dataset, folder: Path) -> list[torch.Tensor]:
        """Each image's windows, read from ``folder`` or proposed and written there."""
        out = []
        for i in polled(range(len(base)), lambda: f"windows of {len(out)} of {len(base)} images in {folder}"):
            path = folder / f"{i}.npy"
            if path.is_file():
                out.append(torch.from_numpy(np.load(path)).reshape(-1, 4))
                continue
            image, target = base[i]
            wins = select_training_windows(self.proposer(image), object_boxes(target["mask"]),
                                           self.settings["min_iou"], self.settings["enlarge"])
            if is_main_process():
                buffer = io.BytesIO()
                np.save(buffer, wins.numpy())
                with atomic_write(path, "wb") as f:
                    f.write(buffer.getvalue())
            out.append(wins)
        return out

    def run(self, ctx: StageContext) -> dict[str, Any]:
        from visiontasks.data import build_dataset

        s = self.settings
        data = ctx.cfg["data"]
        base = build_dataset(data, data["train_split"], train=False, task="segmentation")
        windows = self.windows(base, Path(ctx.out_dir) / WINDOWS_FOLDER)
        crops = WindowCrops(base, windows, s["resize"], s["crop_size"], s["hflip_prob"])
        if not len(crops):
            raise ValueError(f"no proposal overlaps a ground-truth object with IoU >= {s['min_iou']} "
                             f"(model.stages.stage2.min_iou); lower it or use windows: full")
        own = Path(ctx.out_dir) / "checkpoint_last.pt"
        first = Path(ctx.out_dir) / ObjectCropStage.folders[0] / "checkpoint_last.pt"
        if not (ctx.resume and own.is_file()) and first.is_file():
            load_matching_weights(ctx.model, first)
        trainer = ctx.make_trainer(eval_fn=ctx.eval_fn)
        trainer.train_dataset = crops
        ctx.metrics = train_resumed(trainer, ctx)
        return {"iterations": trainer.iteration, "windows": len(crops)}
