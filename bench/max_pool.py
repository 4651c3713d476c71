"""2×2 stride-2 max pooling: PyTorch's ``F.max_pool2d`` against two element-wise maxima
(``visiontasks/max_pool.py``), the same process.

VGG16's four pools at 600×800 (the maps as Faster R-CNN pads them, 608×800, batch 1) and a batch of
two (as training sees pool1), each in fp32 and bf16, NCHW and channels-last, under
``torch.inference_mode``; per case the two calls are interleaved after a warm-up call each and the
minimum of ``--repeats`` is printed, with a check that both give the same tensor. ``--models``
times whole ``load_model(config, precision).predict(photo)`` calls instead, the pools of one loaded
model switched between PyTorch's kernel and the maxima from call to call (interleaved), with a check
that the detections are the same. Figures are printed, never asserted.

    python bench/max_pool.py [--threads 2 --repeats 7]
    python bench/max_pool.py --models configs/detection/faster_rcnn_vgg16_voc07.yaml --repeats 5
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from det_latency import interleaved_times  # noqa: E402

from visiontasks.max_pool import PairwiseMaxPool2d, max_pool_2x2, select_pool_kernels  # noqa: E402

#: (N, C, H, W) inputs of VGG16's pool1 … pool4 at 608×800, and pool1 at batch 2.
SHAPES = (((1, 64, 608, 800), "pool1"), ((1, 128, 304, 400), "pool2"), ((1, 256, 152, 200), "pool3"),
          ((1, 512, 76, 100), "pool4"), ((2, 64, 608, 800), "pool1, batch 2"))


def _set_pools(model: torch.nn.Module, ours: bool) -> None:
    """The model's qualifying pools as maxima (``select_pool_kernels``) or back to plain ``nn.MaxPool2d``."""
    if ours:
        select_pool_kernels(model)
        return
    for module in model.modules():
        if type(module) is PairwiseMaxPool2d:
            module.__class__ = torch.nn.MaxPool2d


def models_table(configs: list[str], repeats: int) -> None:
    """Whole predict() calls with the pools of each loaded model as PyTorch's kernel or as maxima."""
    from predict_overhead import IMAGE, load_image

    import visiontasks.api as api

    image = load_image(IMAGE)
    print("| config | precision | pools | PyTorch's pools ms | maxima ms | ratio | same detections |")
    print("|---|---|---|---|---|---|---|")
    for config in configs:
        for precision in ("fp32", "bf16"):
            predictor = api.load_model(config, precision=precision)
            pools = sum(isinstance(m, PairwiseMaxPool2d) for m in predictor.model.modules())
            results = {}

            def call(ours: bool):
                _set_pools(predictor.model, ours)
                return predictor.predict(image)
            steps = {"torch": lambda: call(False), "ours": lambda: call(True)}
            times = interleaved_times(steps, repeats, warmup=1,
                                      on_step=lambda i, name, took, result: results.__setitem__(name, result))
            same = torch.equal(torch.as_tensor(results["torch"].boxes), torch.as_tensor(results["ours"].boxes))
            t_ms, o_ms = min(times["torch"]) * 1e3, min(times["ours"]) * 1e3
            print(f"| {Path(config).name} | {precision} | {pools} | {t_ms:.0f} | {o_ms:.0f} | {o_ms / t_ms:.3f} | {same} |",
                  flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--models", nargs="+", help="configs whose load_model(...).predict is timed instead")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"threads={args.threads} repeats={args.repeats} torch {torch.__version__}")
    if args.models:
        return models_table(args.models, args.repeats)
    print("| pool | N×C×H×W | dtype | layout | F.max_pool2d ms | two maxima ms | ratio | same values |")
    print("|---|---|---|---|---|---|---|---|")
    for shape, name in SHAPES:
        for dtype in (torch.float32, torch.bfloat16):
            for layout in ("NCHW", "channels-last"):
                x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(dtype)
                if layout == "channels-last":
                    x = x.contiguous(memory_format=torch.channels_last)
                with torch.inference_mode():
                    same = torch.equal(F.max_pool2d(x, 2, 2), max_pool_2x2(x))
                    times = interleaved_times({"F": lambda: F.max_pool2d(x, 2, 2), "ours": lambda: max_pool_2x2(x)},
                                              args.repeats, warmup=1)
                f_ms, ours_ms = min(times["F"]) * 1e3, min(times["ours"]) * 1e3
                print(f"| {name} | {'×'.join(map(str, shape))} | {str(dtype)[6:]} | {layout} | {f_ms:.1f} | "
                      f"{ours_ms:.1f} | {ours_ms / f_ms:.2f} | {same} |", flush=True)


if __name__ == "__main__":
    main()
