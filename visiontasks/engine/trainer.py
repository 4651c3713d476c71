"""The iteration-based training loop shared by detectors and segmenters.

One iteration: load a batch (see :mod:`visiontasks.engine.sampler`), move it to the device,
``loss_dict = forward_fn(model, images, targets)``, ``loss = sum(loss_dict.values())``, backward
(through ``torch.amp.GradScaler`` under CUDA autocast; with ``accumulate = k`` the batch runs as
k micro-batches whose losses are weighted by their share of the batch and whose gradients add up
before the step, Caffe's ``iter_size``), optional gradient clipping, SGD step,
per-iteration LR schedule step. Around it: logging (:mod:`visiontasks.engine.logger`), atomic
checkpoints (:mod:`visiontasks.engine.checkpoint`), periodic and final evaluation, DDP. On the
CPU some layers are re-classed for speed: 2×2 max pools that need no gradient
(:mod:`visiontasks.max_pool`), fully connected layers of 2^23 weights or more with kept cast and
gradient buffers (:mod:`visiontasks.buffered_linear`) and, in bf16, VGG16's frozen conv1 block in
pieces (:mod:`visiontasks.banded_stem`), all three giving PyTorch's numbers bit for bit;
in fp32, VGG16's 3×3 convolutions by a Winograd kernel (:mod:`visiontasks.winograd_conv`).

A run is exactly resumable: the checkpoint holds model, optimizer, scheduler, scaler, the
iteration, every rank's RNG states and the log window; data order and augmentation depend only on
``(seed, position in the stream)``. On the CPU an interrupted-and-resumed run logs bit-identical
losses to an uninterrupted one. After SIGTERM/SIGINT (:mod:`visiontasks.engine.preempt`) the loop
stops after the current step, every DDP rank at the same iteration, with a checkpoint.

Shape shorthand: ``images`` is whatever ``collate_fn`` returns first (a list of (3, H, W)
tensors for the toolkit's datasets), ``targets`` the second (a list of dicts of tensors).
"""
from __future__ import annotations

import math
import os
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from visiontasks import winograd_conv
from visiontasks.banded_stem import select_banded_stems
from visiontasks.buffered_linear import select_linear_kernels
from visiontasks.conv_select import select_conv_kernels
from visiontasks.max_pool import select_pool_kernels
from visiontasks.engine import distributed as D
from visiontasks.engine import preempt
from visiontasks.engine.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from visiontasks.engine.common import resolve_device, seed_everything, to_device
from visiontasks.engine.logger import TrainLogger, plot_loss_curve
from visiontasks.engine.optim import build_optimizer, build_scheduler
from visiontasks.engine.sampler import ResumableBatchSampler, SeededDataset, mix_seed
from visiontasks.errors import InputError
from visiontasks.precision import autocast, fp32_boundaries, prefers_channels_last, resolve_amp

__all__ = ["Trainer", "NonFiniteLossError", "default_forward"]

ForwardFn = Callable[[nn.Module, Any, Any], dict[str, torch.Tensor]]
CHECKPOINT_NAME = "checkpoint_last.pt"


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; training stopped without writing a new checkpoint."""


def default_forward(model: nn.Module, images: Any, targets: Any) -> dict[str, torch.Tensor]:
    """The detection convention: a model in training mode returns its loss dict."""
    return model(images, targets)


def _check(name: str, value: Any, ok: bool, want: str) -> None:
    if not ok:
        raise ValueError(f"{name} must be {want}, got {value!r}")


class Trainer:
    """Trains ``model`` on ``train_dataset`` for ``max_iters`` iterations into ``out_dir``.

    The keyword arguments after ``out_dir`` up to ``seed`` are the ``train:`` section of a config,
    so ``Trainer(model, ds, collate_fn, out, **cfg["train"], device=..., eval_fn=...)`` works.

    Args:
        model: the network (moved to ``device``; wrapped in DDP when the world size is > 1).
        train_dataset: map-style dataset of ``(image, target)``.
        collate_fn: batches a list of samples into ``(images, targets)``.
        out_dir: the run directory (``log.csv``, ``tb/``, ``checkpoint_last.pt``, ``loss.png``).
        max_iters: total SGD iterations.
        batch_size: images per iteration per process.
        lr, momentum, weight_decay: the optimizer's (Caffe bias convention, see :func:`build_optimizer`).
        optimizer: the update rule, sgd | nesterov | adagrad | rmsprop | adam | adamw
            (:data:`visiontasks.engine.optim.OPTIMIZERS`; momentum is read by sgd and nesterov only).
        schedule, steps, gamma, warmup_iters, warmup_factor: see :func:`build_scheduler`.
        amp: mixed precision, see :func:`visiontasks.precision.resolve_amp`: "auto" (also True/None:
            float16 + GradScaler on CUDA; bfloat16 on a CPU with native bf16, else fp32), "none" (also False), "bf16" (bfloat16
            autocast, no scaler; on the CPU only with native bf16, else fp32 and one warning line)
            or "fp16" (CUDA only). The network's parts return float32 (``fp32_boundaries``), so
            losses and box coding run in fp32; models with 2-D convolutions train channels-last.
        bias_lr_factor, bias_weight_decay: LR and weight-decay multipliers of the biases; None takes
            the model's ``optim_defaults`` (the convention of its paper), and for models without
            one Caffe's (×2 LR, no decay) as the R-CNN family and FCN used.
        clip_grad_norm: clip the global gradient norm to this value (None = no clipping).
        accumulate: split each batch into this many micro-batches and add their gradients before
            the step (a batch that does not fit in memory; YOLOv1's 64). Each micro-batch's loss is
            weighted by its share of the images, so a loss averaged over the images of a batch gets
            the same gradient as in one pass (exactly for YOLO's equation 3; the two-stage
            detectors normalise sampled anchors/RoIs per pass, so theirs is close, not equal).
        eval_every: evaluate every this many iterations (0 = only at the end).
        checkpoint_every: save every this many iterations (0 = only at the end).
        log_every: a ``log.csv`` row every this many iterations.
        seed: seeds torch/numpy/random (``seed + rank``), the data order and augmentation.
        num_workers: DataLoader worker processes.
        device: "cpu", "cuda", "cuda:1", a torch.device, or None (CUDA when available; under
            DDP "cuda" means this process's LOCAL_RANK GPU).
        eval_fn: ``eval_fn(unwrapped_model) -> metrics dict``, called in eval mode on rank 0.
        forward_fn: ``forward_fn(model, images, targets) -> dict of scalar losses``;
            default ``model(images, targets)``.
        config: the resolved config, stored in checkpoints.
        meta: extra facts stored in checkpoints (class names, task).
        find_unused_parameters: passed to DDP (for models with branches unused in some iterations).

    Raises:
        ValueError: an argument out of range, or an unknown keyword (named).
    """

    def __init__(
        self, model: nn.Module, train_dataset: Dataset, collate_fn: Callable[[list], Any],
        out_dir: str | os.PathLike[str], *, max_iters: int, batch_size: int = 1, lr: float = 0.001,
        momentum: float = 0.9, weight_decay: float = 0.0005, optimizer: str = "sgd", schedule: str = "step",
        steps: Sequence[int] = (), gamma: float = 0.1, warmup_iters: int = 0, warmup_factor: float = 0.001,
        amp: str | bool | None = "auto", bias_lr_factor: float | None = None, bias_weight_decay: float | None = None,
        clip_grad_norm: float | None = None, accumulate: int = 1, eval_every: int = 0,
        checkpoint_every: int = 1000, log_every: int = 20, seed: int = 0, num_workers: int = 2,
        device: str | torch.device | None = None, eval_fn: Callable[[nn.Module], dict] | None = None,
        forward_fn: ForwardFn | None = None, config: dict | None = None, meta: dict | None = None,
        find_unused_parameters: bool = False, **unknown: Any,
    ) -> None:
        if unknown:
            raise ValueError(f"unknown Trainer argument {sorted(unknown)[0]!r} (check the train: config section)")
        _check("max_iters", max_iters, isinstance(max_iters, int) and max_iters > 0, "a positive int")
        _check("batch_size", batch_size, isinstance(batch_size, int) and batch_size > 0, "a positive int")
        for name, value in (("eval_every", eval_every), ("checkpoint_every", checkpoint_every),
                            ("num_workers", num_workers)):
            _check(name, value, isinstance(value, int) and value >= 0, "an int >= 0")
        _check("clip_grad_norm", clip_grad_norm, clip_grad_norm is None or clip_grad_norm > 0, "None or > 0")
        _check("accumulate", accumulate, isinstance(accumulate, int) and 0 < accumulate <= batch_size,
               f"an int in [1, batch_size = {batch_size}]")
        self.rank, self.world_size, local_rank = D.init_distributed()
        self.device = resolve_device(device, local_rank)
        self.out_dir = Path(out_dir)
        self.max_iters, self.batch_size, self.seed = max_iters, batch_size, seed
        self.eval_every, self.checkpoint_every, self.log_every = eval_every, checkpoint_every, log_every
        self.clip_grad_norm, self.num_workers, self.accumulate = clip_grad_norm, num_workers, accumulate
        self.train_dataset, self.collate_fn = train_dataset, collate_fn
        self.eval_fn, self.forward_fn = eval_fn, forward_fn or default_forward
        self.config, self.meta = config, dict(meta or {})
        self.checkpoint_path = self.out_dir / CHECKPOINT_NAME
        seed_everything(seed + self.rank)

        self.model = model.to(self.device)
        optim = {"bias_lr_factor": 2.0, "bias_weight_decay": 0.0, **dict(getattr(model, "optim_defaults", {}))}
        if bias_lr_factor is not None:
            optim["bias_lr_factor"] = bias_lr_factor
        if bias_weight_decay is not None:
            optim["bias_weight_decay"] = bias_weight_decay
        self.optimizer = build_optimizer(self.model, lr=lr, momentum=momentum, weight_decay=weight_decay,
                                         optimizer=optimizer, **optim)
        self.scheduler = build_scheduler(self.optimizer, max_iters, schedule=schedule, steps=steps, gamma=gamma,
                                         warmup_iters=warmup_iters, warmup_factor=warmup_factor)
        self.amp_dtype = resolve_amp(amp, self.device)
        self.use_amp = self.amp_dtype is not None
        if self.use_amp:
            fp32_boundaries(self.model)
            if prefers_channels_last(self.model):  # oneDNN's low-precision convs are channels-last natively
                self.model.to(memory_format=torch.channels_last)
        elif self.device.type == "cpu" and winograd_conv.model_qualifies(self.model):
            select_conv_kernels(self.model)  # fp32: VGG16's 3×3 convs by NNPACK's Winograd kernel
        if self.device.type == "cpu":
            select_pool_kernels(self.model)  # 2×2 max pools of frozen layers and evaluation without indices
            select_linear_kernels(self.model)  # fc6/fc7: casts and weight gradients in kept buffers
            select_banded_stems(self.model)  # bf16: VGG16's frozen conv1 block in pieces (chunks or bands)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype is torch.float16)
        self._params = [p for p in self.model.parameters() if p.requires_grad]
        self.train_model: nn.Module = self.model
        if self.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = DistributedDataParallel(self.model, device_ids=ids,
                                                       find_unused_parameters=find_unused_parameters)
        self.iteration = 0
        self._logger = TrainLogger(self.out_dir, max_iters, 0, log_every, enabled=False)  # validates log_every
        self._logger_state: dict = {}
        self._eval_pending = False  # stopped by a signal before an evaluation that was due

    # ------------------------------------------------------------------ data
    def _loader_iter(self) -> Any:
        sampler = ResumableBatchSampler(len(self.train_dataset), self.batch_size, self.seed, self.rank,
                                        self.world_size, start_iter=self.iteration)
        # An explicit generator keeps the DataLoader from drawing its base seed from the global RNG.
        loader = DataLoader(SeededDataset(self.train_dataset), batch_sampler=sampler, collate_fn=self.collate_fn,
                            num_workers=self.num_workers, pin_memory=self.device.type == "cuda",
                            generator=torch.Generator().manual_seed(self.seed))
        return iter(loader)

    # ------------------------------------------------------------------ one step
    def _micro_batches(self, images: Any, targets: Any) -> list[tuple[Any, Any, float]]:
        """``(images, targets, share of the batch)`` per micro-batch (one when ``accumulate`` is 1)."""
        n = len(images)
        if self.accumulate == 1:
            return [(images, targets, 1.0)]
        size = math.ceil(n / self.accumulate)
        return [(images[i:i + size], targets[i:i + size], len(images[i:i + size]) / n) for i in range(0, n, size)]

    def _step(self, images: Any, targets: Any) -> tuple[float, dict[str, float]]:
        non_blocking = self.device.type == "cuda"
        images = to_device(images, self.device, non_blocking)
        targets = to_device(targets, self.device, non_blocking)
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.zero_grad(set_to_none=True)
        chunks = self._micro_batches(images, targets)
        total: dict[str, torch.Tensor] = {}
        for k, (part_images, part_targets, share) in enumerate(chunks):
            last = k == len(chunks) - 1  # DDP all-reduces the gradients once, after the last micro-batch
            sync = nullcontext() if last or self.train_model is self.model else self.train_model.no_sync()
            with sync:
                with autocast(self.device, self.amp_dtype):
                    loss_dict = self.forward_fn(self.train_model, part_images, part_targets)
                    if not isinstance(loss_dict, dict) or not loss_dict:
                        raise TypeError(f"forward_fn must return a non-empty dict of scalar losses, got "
                                        f"{type(loss_dict).__name__} (is the model in training mode?)")
                    loss = sum(loss_dict.values())
                # a non-finite loss still runs backward (every DDP rank must), and is refused below
                self.scaler.scale(loss * share if share != 1.0 else loss).backward()
            for key, value in loss_dict.items():
                total[key] = total.get(key, 0.0) + value.detach().float() * share
        losses = D.all_reduce_dict(total)
        if not all(math.isfinite(v) for v in losses.values()):
            self.optimizer.zero_grad(set_to_none=True)
            raise NonFiniteLossError(
                f"non-finite loss at iteration {self.iteration + 1}: {losses}; stopped, the last checkpoint "
                f"({self.checkpoint_path}) is unchanged. Try a lower train.lr, train.clip_grad_norm or "
                "train.amp=false.")
        if self.clip_grad_norm is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self._params, self.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.iteration += 1
        return lr, losses

    # ------------------------------------------------------------------ loop
    def train(self) -> dict[str, Any]:
        """Runs iterations ``self.iteration + 1 .. max_iters``, then checkpoints and evaluates.

        Returns:
            The final evaluation metrics (``{}`` without ``eval_fn``), on every rank.

        A SIGTERM/SIGINT received under :func:`visiontasks.engine.preempt.handling_signals` stops
        it after the current step (every rank at the same iteration), with a checkpoint.

        Raises:
            NonFiniteLossError: the loss became NaN/inf (nothing new is saved).
            Preempted: a signal stopped it; ``checkpoint_last.pt`` holds the last finished step.
        """
        main = D.is_main_process()
        ran = self.iteration < self.max_iters
        self._logger = TrainLogger(self.out_dir, self.max_iters, self.iteration, self.log_every, enabled=main,
                                   evaluates_first=not ran or self._eval_pending)
        self._logger.load_state_dict(self._logger_state)
        batches = self._loader_iter() if ran else None
        try:
            self.train_model.train()
            if self._eval_pending and ran:  # a signal stopped the run before this iteration's evaluation
                self.evaluate()
            self._eval_pending = False
            while self.iteration < self.max_iters:
                try:
                    images, targets = next(batches)
                except Exception:  # e.g. a spawned loader worker ended by the same Ctrl-C: no step taken
                    if preempt.stop_requested() is None:
                        raise
                    self._stop(preempt.stop_requested(), saved=False, eval_due=False)
                lr, losses = self._step(images, targets)
                self._logger.log_iteration(self.iteration, lr, losses)
                if self.iteration == self.max_iters:
                    break
                saved = bool(self.checkpoint_every and self.iteration % self.checkpoint_every == 0)
                if saved:
                    self.save()
                eval_due = bool(self.eval_every and self.iteration % self.eval_every == 0)
                signum = preempt.stop_agreed()  # every rank, every step: all stop at the same iteration
                if signum is not None:
                    self._stop(signum, saved, eval_due)
                if eval_due:
                    self.evaluate()
            batches = None  # shuts the DataLoader workers down
            if ran or not self.checkpoint_path.is_file():
                self.save()
            metrics = self.evaluate()
        finally:
            batches = None  # also on errors: the traceback must not keep the workers alive
            self._logger.close()
        if main and (self.out_dir / "log.csv").is_file():
            plot_loss_curve(self.out_dir / "log.csv", self.out_dir / "loss.png")
        return metrics

    def _stop(self, signum: int, saved: bool, eval_due: bool) -> None:
        """Stops for a signal after a finished step: writes the checkpoint (unless this iteration's
        is written; an evaluation due now is left for ``--resume`` to run first) and raises.

        Raises:
            Preempted: always, on every rank.
        """
        self._eval_pending = eval_due
        if not saved or eval_due:
            self.save()
        raise preempt.Preempted(signum, f"checkpoint written at iteration {self.iteration}: {self.checkpoint_path}")

    def evaluate(self) -> dict[str, Any]:
        """Runs ``eval_fn`` on the unwrapped model in eval mode (rank 0), logs and shares the result.

        The RNG states are restored afterwards, so evaluating does not change the training run.
        """
        if self.eval_fn is None:
            return {}
        metrics: dict[str, Any] = {}
        if D.is_main_process():
            rng = capture_rng_state()
            self.model.eval()
            try:
                with torch.no_grad():
                    metrics = self.eval_fn(self.model)
            finally:
                self.model.train()
                restore_rng_state(rng)
            self._logger.log_metrics(self.iteration, metrics)
        if D.is_dist():
            box = [metrics]
            dist.broadcast_object_list(box, src=0)  # also makes the other ranks wait for rank 0
            metrics = box[0]
        return metrics

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume (a collective call under DDP: every rank must call it)."""
        rng = capture_rng_state()
        if D.is_dist():
            all_rng: list[Any] = [None] * self.world_size
            dist.all_gather_object(all_rng, rng)
        else:
            all_rng = [rng]
        return {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
            "iteration": self.iteration, "rng": all_rng, "logger": self._logger.state_dict(),
            "config": self.config, "meta": self.meta, "eval_pending": self._eval_pending,
        }

    def save(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Writes the checkpoint atomically (default ``out_dir/checkpoint_last.pt``).

        Every rank must call it (the RNG states are gathered); only rank 0 writes.
        """
        path = Path(path) if path is not None else self.checkpoint_path
        state = self.state_dict()
        if D.is_main_process():
            save_checkpoint(path, state)
        return path

    def resume(self, path: str | os.PathLike[str] | None = None) -> int:
        """Restores a checkpoint (default ``out_dir/checkpoint_last.pt``); ``train()`` then continues.

        The state (weights, momentum buffers, iteration, RNG, scaler) comes from the file; the
        hyperparameters (LR schedule incl. ``max_iters``, momentum, weight decay) are this
        Trainer's, so a run can be resumed with e.g. a longer schedule. Unchanged arguments
        continue the interrupted run exactly.

        Returns:
            The iteration training resumes from.

        Raises:
            InputError: the file is missing, unreadable, or does not fit this model/optimizer.
        """
        path = Path(path) if path is not None else self.checkpoint_path
        state = load_checkpoint(path)
        missing = [k for k in ("model", "optimizer", "scheduler", "iteration") if k not in state]
        if missing:
            raise InputError(path, f"not a training checkpoint (no {', '.join(missing)}); cannot resume from it")
        hyper = [{k: v for k, v in g.items() if k != "params"} for g in self.optimizer.param_groups]
        base_lrs = list(self.scheduler.base_lrs)
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise InputError(path, f"does not match this model: {str(exc).splitlines()[0]}") from None
        self.scheduler.load_state_dict(state["scheduler"])
        self.scheduler.base_lrs = base_lrs
        for group, h, base_lr, fn in zip(self.optimizer.param_groups, hyper, base_lrs, self.scheduler.lr_lambdas):
            group.update(h, lr=base_lr * fn(self.scheduler.last_epoch))  # what LambdaLR.step() computes
        self.scheduler._last_lr = [g["lr"] for g in self.optimizer.param_groups]
        if state.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        self.iteration = int(state["iteration"])
        rng = state.get("rng") or []
        if len(rng) == self.world_size:
            restore_rng_state(rng[self.rank])
        else:  # resumed with another number of processes: a fresh, still deterministic, seed
            seed_everything(mix_seed(self.seed, self.rank, self.iteration))
        self._logger_state = state.get("logger") or {}
        self._eval_pending = bool(state.get("eval_pending", False))
        return self.iteration
