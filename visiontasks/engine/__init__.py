"""Training engine: SGD + LR schedules, atomic checkpoints, resumable data order, logging, DDP.

``visiontasks.engine.run`` (config → trained run directory) and ``visiontasks.engine.evaluate``
are imported on demand, not here, so that the engine stays usable on its own.
"""
from visiontasks.engine.checkpoint import load_checkpoint, save_checkpoint
from visiontasks.engine.distributed import init_distributed, is_main_process
from visiontasks.engine.logger import TrainLogger, plot_loss_curve
from visiontasks.engine.optim import build_optimizer, build_scheduler
from visiontasks.engine.sampler import ResumableBatchSampler, SeededDataset
from visiontasks.engine.trainer import NonFiniteLossError, Trainer

__all__ = [
    "Trainer", "NonFiniteLossError", "build_optimizer", "build_scheduler", "save_checkpoint", "load_checkpoint",
    "init_distributed", "is_main_process", "TrainLogger", "plot_loss_curve", "ResumableBatchSampler",
    "SeededDataset",
]
