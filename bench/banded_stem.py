"""VGG16's conv1 block whole against split (``visiontasks/banded_stem.py``), the same process.

The block (conv1_1, ReLU, conv1_2, ReLU, pool1) of a bf16 VGG16, channels-last, at 608×800 batch 1
(``predict()``) and 2 (a training batch), and at 224×224 batch 128 (R-CNN's warped regions), under
``torch.inference_mode``, split as ``plan`` says (chunks of samples, bands of rows): per case the two are
interleaved after a warm-up call each, the minimum of ``--repeats`` is printed with the minor page
faults of the last call (``getrusage``) and a check that both give the same tensor. ``--models``
times whole ``load_model(config, "bf16").predict(photo)`` calls instead, the loaded model's body
switched between ``nn.Sequential`` and ``BandedSequential`` call by call, with a check that the
detections are the same. Figures are printed, never asserted.

    python bench/banded_stem.py [--threads 2 --repeats 7]
    python bench/banded_stem.py --models configs/detection/faster_rcnn_vgg16_voc07.yaml --repeats 10
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from visiontasks import get_model  # noqa: E402
from visiontasks.banded_stem import BandedSequential, plan, stem_forward, stem_length  # noqa: E402


def _timed(fn, repeats: int) -> tuple[float, int, object]:
    """(min seconds, faults of the last call, last result) of ``repeats`` calls after one warm-up."""
    out = fn()
    best, faults = float("inf"), 0
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    return best, faults, out


def block_table(repeats: int) -> None:
    body = get_model("vgg16").body.eval().to(torch.bfloat16)
    layers = list(body)[:stem_length(body)]
    whole = nn.Sequential(*layers)
    print("| input | samples a chunk, bands | whole ms | faults | split ms | faults | same |")
    print("|---|---|---|---|---|---|---|")
    for n, h, w in ((1, 608, 800), (2, 608, 800), (128, 224, 224)):  # predict(), a training batch, R-CNN regions
        x = torch.randn(n, 3, h, w).bfloat16().contiguous(memory_format=torch.channels_last)
        samples, bands = plan(layers, x)
        with torch.inference_mode():
            runs = {}
            for _ in range(2):  # interleaved: whole, split, whole, split
                runs["whole"] = _timed(lambda: whole(x), repeats)
                runs["split"] = _timed(lambda: stem_forward(layers, x, samples, bands), repeats)
        same = torch.equal(runs["whole"][2], runs["split"][2])
        print(f"| {n}×3×{h}×{w} bf16 channels-last | {samples}, {bands} | {runs['whole'][0] * 1e3:.1f} "
              f"| {runs['whole'][1]:,} | {runs['split'][0] * 1e3:.1f} | {runs['split'][1]:,} | {same} |", flush=True)


def models_table(configs: list[str], repeats: int) -> None:
    from predict_overhead import IMAGE, load_image

    import visiontasks.api as api

    image = load_image(IMAGE)
    print("| config | whole ms (min / median) | faults | banded ms (min / median) | faults | same detections |")
    print("|---|---|---|---|---|---|")
    for config in configs:
        predictor = api.load_model(config, precision="bf16")
        bodies = [m for m in predictor.model.modules() if isinstance(m, BandedSequential)]
        times: dict[bool, list[float]] = {False: [], True: []}
        faults: dict[bool, int] = {}
        results = {}
        for i in range(repeats + 1):
            for banded in (False, True):
                for body in bodies:
                    body.__class__ = BandedSequential if banded else nn.Sequential
                before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                start = time.perf_counter()
                results[banded] = predictor.predict(image)
                if i:  # the first round warms up
                    times[banded].append(time.perf_counter() - start)
                    faults[banded] = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
        same = all(torch.equal(torch.as_tensor(getattr(results[False], k)), torch.as_tensor(getattr(results[True], k)))
                   for k in ("boxes", "scores", "labels"))
        cells = [f"{min(times[b]) * 1e3:.0f} / {sorted(times[b])[len(times[b]) // 2] * 1e3:.0f} | {faults[b]:,}"
                 for b in (False, True)]
        print(f"| {Path(config).name} | {cells[0]} | {cells[1]} | {same} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--models", nargs="+", help="configs: whole predict() calls, body switched call by call")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"threads={args.threads} repeats={args.repeats}")
    if args.models:
        models_table(args.models, args.repeats)
    else:
        block_table(args.repeats)


if __name__ == "__main__":
    main()
