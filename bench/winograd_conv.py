"""VGG16's 3×3 convolutions at Faster R-CNN's scale: oneDNN (NCHW and channels-last) against NNPACK's
Winograd kernel (``visiontasks/winograd_conv.py``), fp32, one image, the same process.

Every layer shape of VGG16 conv1_1 … conv5_3 on a 600×800 image (each distinct shape once; conv5 on
the 38×50 map), random inputs and weights, under ``torch.inference_mode``; per shape the three calls
are interleaved after a warm-up call each, and the minimum of ``--repeats`` is printed with the
relative error of each result against a float64 convolution. ``--sizes`` adds a grid of square maps
(speed-up of NNPACK over the faster oneDNN layout), the data behind ``MIN_POSITIONS`` /
``MIN_CHANNELS``. Figures are printed, never asserted.

    python bench/winograd_conv.py [--threads 2 --repeats 3] [--grid]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from det_latency import interleaved_times  # noqa: E402

from visiontasks import winograd_conv  # noqa: E402

#: (in, out, H, W) of VGG16's 3×3 layers at 600×800, each shape once, with its layers' names.
VGG16_600x800 = (((3, 64, 600, 800), "conv1_1"), ((64, 64, 600, 800), "conv1_2"), ((64, 128, 300, 400), "conv2_1"),
                 ((128, 128, 300, 400), "conv2_2"), ((128, 256, 150, 200), "conv3_1"),
                 ((256, 256, 150, 200), "conv3_2, conv3_3"), ((256, 512, 75, 100), "conv4_1"),
                 ((512, 512, 75, 100), "conv4_2, conv4_3"), ((512, 512, 38, 50), "conv5_1 … conv5_3"))


def _min_times(fns: dict, repeats: int) -> dict[str, float]:
    """Minimum seconds per call of each, interleaved after one warm-up round."""
    return {name: min(t) for name, t in interleaved_times(fns, repeats, warmup=1).items()}


def _calls(cin: int, cout: int, h: int, w: int) -> tuple[dict, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(cin * 7 + h)
    x = torch.randn(1, cin, h, w, generator=g)
    weight = torch.randn(cout, cin, 3, 3, generator=g) * (2.0 / (9 * cin)) ** 0.5
    bias = torch.randn(cout, generator=g) * 0.1
    x_cl, w_cl = x.contiguous(memory_format=torch.channels_last), weight.contiguous(memory_format=torch.channels_last)
    return ({"onednn_nchw": lambda: F.conv2d(x, weight, bias, padding=1),
             "onednn_cl": lambda: F.conv2d(x_cl, w_cl, bias, padding=1),
             "nnpack": lambda: winograd_conv.winograd_conv2d(x, weight, bias, 1)}, x, weight, bias)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--grid", action="store_true", help="also the square-map grid (channels × sizes)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not torch.backends.nnpack.is_available():
        sys.exit("NNPACK is not available on this CPU / PyTorch build")
    print(f"threads={args.threads} repeats={args.repeats} torch {torch.__version__}")
    print("| layer | in→out on H×W | oneDNN NCHW ms | oneDNN channels-last ms | NNPACK ms | NNPACK / best oneDNN "
          "| rel. error oneDNN / NNPACK vs float64 |")
    print("|---|---|---|---|---|---|---|")
    total = dict.fromkeys(("onednn_nchw", "onednn_cl", "nnpack"), 0.0)
    with torch.inference_mode():
        for (cin, cout, h, w), names in VGG16_600x800:
            fns, x, weight, bias = _calls(cin, cout, h, w)
            best = _min_times(fns, args.repeats)
            ref = F.conv2d(x.double(), weight.double(), bias.double(), padding=1)
            err = {k: ((fns[k]().double() - ref).norm() / ref.norm()).item() for k in ("onednn_nchw", "nnpack")}
            layers = names.count(",") + 1 + 2 * names.count("…")
            for k in total:
                total[k] += layers * best[k]
            print(f"| {names} | {cin}→{cout} on {h}×{w} | {1e3 * best['onednn_nchw']:.0f} | "
                  f"{1e3 * best['onednn_cl']:.0f} | {1e3 * best['nnpack']:.0f} | "
                  f"{best['nnpack'] / min(best['onednn_nchw'], best['onednn_cl']):.2f} | "
                  f"{err['onednn_nchw']:.1e} / {err['nnpack']:.1e} |")
        print(f"| all 13 layers | | {1e3 * total['onednn_nchw']:.0f} | {1e3 * total['onednn_cl']:.0f} | "
              f"{1e3 * total['nnpack']:.0f} | | |")
        if args.grid:
            print("\nNNPACK speed-up over the faster oneDNN layout, C→C on S×S:")
            sizes = (28, 38, 50, 64, 80, 100)
            print("| C | " + " | ".join(f"{s}×{s}" for s in sizes) + " |\n|---|" + "---|" * len(sizes))
            for c in (32, 64, 128, 256, 512):
                row = []
                for s in sizes:
                    best = _min_times(_calls(c, c, s, s)[0], args.repeats + 2)
                    row.append(f"{min(best['onednn_nchw'], best['onednn_cl']) / best['nnpack']:.2f}")
                print(f"| {c} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
