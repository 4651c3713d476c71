"""Inference latency and peak memory: our Faster R-CNN vs torchvision's ``FasterRCNN``, same model.

Both models: the same backbone body (VGG16 conv1_1 … conv5_3, 512 channels, stride 16; or the
"small" backbone), 9 anchors (sizes 128/256/512, ratios 0.5/1/2), a 3×3 RPN conv of the backbone
width, 6000 pre-NMS / 300 post-NMS test proposals, RoI max pooling 7×7 (torchvision's box_roi_pool
is ``torchvision.ops.roi_pool`` wrapped to its ``(features dict, proposals, image_shapes)``
interface: ``MultiScaleRoIAlign`` would be RoIAlign, not RoIPool), the backbone's own RoI head
(fc6/fc7 4096 for VGG16) + 21-way classifier / 84 box outputs, NMS 0.3, 100 detections (score
threshold 0 by default, see ``--score-thresh``), 600/1000 resizing, batch padding to 16.
Differences that remain are the implementations' own: torchvision's RPN scores are A sigmoid
logits (ours: the paper's 2A softmax), its anchors are centred on cell corners (ours: cell
centres), and it decodes every anchor before its top-n (we decode the top-n only).

With ``--backbone vgg16`` two more models run beside them (issue 13): torchvision's own VGG16
FasterRCNN (``vgg16().features[:-1]``, ``MultiScaleRoIAlign`` 7×7, its defaults), once as built
there (``tv_native_1024``: torchvision ignores ``representation_size`` and builds a 1024-wide
fc6/fc7) and once with a 4096-wide ``TwoMLPHead`` (``tv_native_4096``). Each model's RoI count
entering the box head and fc7 width are printed.

Ours also runs on the paths ``load_model`` takes: ``ours_fp32_fast`` (fp32, inference mode,
channels-last; VGG16 NCHW with NNPACK's Winograd 3×3 kernel, ``visiontasks/winograd_conv.py``) and
``ours_bf16`` (bf16 autocast, channels-last, float32 at the parts' boundaries so decoding and NMS run
in fp32).

Eval mode, random weights, the same thread count. Latency: both models in one process, their
runs interleaved (ours, torchvision, ours, …) so that the load of other processes on a shared
machine hits both alike; median over ``--runs``. Peak RSS: each model in its own spawned process
(build + two inferences). Figures are printed, never asserted.

Every model here is called on a float tensor, so ``predict()``'s own work (array conversion, result
objects) is not in these figures, and the ratios are printed against each torchvision model in
turn (docs/BENCHMARKS.md's 0.795 / 0.333 are against the same-parts RoIPool model). Issue 24's
user-facing comparison (``load_model(cfg).predict(uint8 array)`` against ``tv_native_4096``) is
``bench/predict_overhead.py``.

    python bench/det_latency.py --runs 5 --threads 2 [--backbone vgg16|small] [--height 480 --width 640] [--no-memory]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import time
from typing import Callable
import traceback

import torch
import torch.nn as nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator as TVAnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models import vgg16 as tv_vgg16
from torchvision.ops import MultiScaleRoIAlign, roi_pool

from visiontasks import get_model
from visiontasks.config import upgrade_renamed
from visiontasks.conv_select import inference_layout
from visiontasks.precision import autocast, cast_dense_weights, fp32_boundaries

COMMON = dict(min_size=600, max_size=1000, rpn_pre_nms_top_n_test=6000, rpn_post_nms_top_n_test=300,
              rpn_pre_nms_top_n_train=12000, rpn_post_nms_top_n_train=2000, box_score_thresh=0.05,
              box_nms_thresh=0.3, box_detections_per_img=100)


class TVRoIPool(nn.Module):
    """``torchvision.ops.roi_pool`` behind torchvision's ``box_roi_pool`` interface."""

    def __init__(self, output_size: int, spatial_scale: float) -> None:
        super().__init__()
        self.output_size, self.spatial_scale = output_size, spatial_scale

    def forward(self, features: dict[str, torch.Tensor], proposals: list[torch.Tensor],
                image_shapes: list[tuple[int, int]]) -> torch.Tensor:
        return roi_pool(features["0"], proposals, self.output_size, self.spatial_scale)


def build_ours(backbone: str = "vgg16", num_classes: int = 21, **overrides) -> nn.Module:
    """Our registered Faster R-CNN with the benchmark settings (COMMON holds torchvision's flat
    names; ours group them as ``rpn`` / ``test``, translated by ``upgrade_renamed``)."""
    model = upgrade_renamed({"model": {"name": "faster_rcnn", **COMMON, **overrides}})["model"]
    model.pop("name")
    return get_model("faster_rcnn", num_classes=num_classes, backbone=backbone, **model)


def build_torchvision(backbone: str = "vgg16", num_classes: int = 21, **overrides) -> nn.Module:
    """torchvision's FasterRCNN assembled from the same backbone, RoIPool 7×7 and the same head."""
    settings = {**COMMON, **overrides}
    body = get_model(backbone)
    head, dim = body.box_head()
    features = body.body
    features.out_channels = body.out_channels
    model = FasterRCNN(
        features, rpn_anchor_generator=TVAnchorGenerator(((128, 256, 512),), ((0.5, 1.0, 2.0),)),
        box_head=head, box_predictor=FastRCNNPredictor(dim, num_classes), box_batch_size_per_image=128,
        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225], **settings,
    )
    # FasterRCNN's constructor only accepts a MultiScaleRoIAlign; swap RoIPool in afterwards.
    model.roi_heads.box_roi_pool = TVRoIPool(body.pool_size, 1.0 / body.stride)
    model.transform.size_divisible = body.stride
    return model


def build_torchvision_native(backbone: str = "vgg16", num_classes: int = 21, head_width: int | None = None,
                             **overrides) -> nn.Module:
    """torchvision's own VGG16 FasterRCNN as issue 13 builds it: ``vgg16().features[:-1]``,
    ``MultiScaleRoIAlign(["0"], 7, 2)``, torchvision's defaults otherwise.

    The issue also passed ``representation_size=4096``; FasterRCNN forwards unknown keywords to
    ``GeneralizedRCNNTransform``, which ignores them, and builds ``TwoMLPHead(25088, 1024)``: fc6/fc7
    of width 1024, 4.5× fewer head FLOPs than VGG16's 4096. ``head_width`` sets the width for real.
    """
    if backbone != "vgg16":
        raise ValueError("the torchvision-native configuration is VGG16 only")
    body = tv_vgg16(weights=None).features[:-1]
    body.out_channels = 512
    kwargs: dict = {"num_classes": num_classes}
    if head_width is not None:
        kwargs = {"box_head": TwoMLPHead(512 * 7 * 7, head_width),
                  "box_predictor": FastRCNNPredictor(head_width, num_classes)}
    return FasterRCNN(body, rpn_anchor_generator=TVAnchorGenerator(((128, 256, 512),), ((0.5, 1.0, 2.0),)),
                      box_roi_pool=MultiScaleRoIAlign(["0"], 7, 2), min_size=600, max_size=1000,
                      rpn_pre_nms_top_n_test=6000, rpn_post_nms_top_n_test=300, **kwargs, **overrides)


def build_torchvision_native_4096(backbone: str = "vgg16", num_classes: int = 21, **overrides) -> nn.Module:
    """The torchvision-native model with fc6/fc7 really 4096 wide (VGG16's and ours)."""
    return build_torchvision_native(backbone, num_classes, head_width=4096, **overrides)


def build_ours_fast(backbone: str = "vgg16", num_classes: int = 21, **overrides) -> nn.Module:
    """Ours on the fp32 path of ``load_model`` (``conv_select.inference_layout``, plus inference
    mode): channels-last, or for VGG16 NCHW with NNPACK's Winograd 3×3 kernel."""
    return inference_layout(build_ours(backbone, num_classes, **overrides).eval())


def build_ours_bf16(backbone: str = "vgg16", num_classes: int = 21, **overrides) -> nn.Module:
    """Ours as ``load_model(..., precision="bf16")`` runs it: channels-last, fp32 boundaries, conv and
    linear weights stored in bf16, run under bf16 autocast (see :data:`AUTOCAST`)."""
    model = build_ours(backbone, num_classes, **overrides).eval()
    fp32_boundaries(model)
    return inference_layout(cast_dense_weights(model, torch.bfloat16))


BUILDERS = {"ours": build_ours, "torchvision": build_torchvision, "ours_fp32_fast": build_ours_fast,
            "ours_bf16": build_ours_bf16}
#: Models run under autocast, and in which dtype.
AUTOCAST = {"ours_bf16": torch.bfloat16}
#: Issue 13's torchvision-native configuration (VGG16 only), beside the same-parts one.
NATIVE_BUILDERS = {"tv_native_1024": build_torchvision_native, "tv_native_4096": build_torchvision_native_4096}


def box_head_of(model: nn.Module) -> nn.Module:
    """The per-RoI fc head of our model or torchvision's."""
    return model.roi_head.box_head if hasattr(model, "roi_head") else model.roi_heads.box_head


def count_rois(model: nn.Module) -> list[int]:
    """A list that receives the number of RoIs entering ``model``'s box head on every call."""
    counts: list[int] = []
    box_head_of(model).register_forward_pre_hook(lambda _m, inputs: counts.append(int(inputs[0].shape[0])))
    return counts


def head_width(model: nn.Module) -> int:
    """Output width of the box head's last linear layer (fc7)."""
    return [m for m in box_head_of(model).modules() if isinstance(m, nn.Linear)][-1].out_features


def peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def interleaved_times(steps: dict[str, Callable[[], object]], runs: int, warmup: int,
                      on_step: Callable[[int, str, float, object], None] | None = None) -> dict[str, list[float]]:
    """Seconds per call of each step, calls interleaved (a, b, a, b, …) so that changing load on a
    shared machine hits all steps alike; ``warmup`` rounds are not timed. ``on_step(round, name,
    seconds, result)`` is called after every call (e.g. to print it, so a run killed midway keeps
    its figures)."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for i in range(warmup + runs):
        for name, step in steps.items():
            t0 = time.perf_counter()
            result = step()
            took = time.perf_counter() - t0
            if on_step is not None:
                on_step(i, name, took, result)
            if i >= warmup:
                times[name].append(took)
    return times


def _inference_step(model: nn.Module, image: torch.Tensor, dtype: torch.dtype | None = None) -> Callable[[], int]:
    def step() -> int:
        with torch.inference_mode(), autocast("cpu", dtype):
            return len(model([image])[0]["boxes"])
    return step


def _measure_memory(name: str, args: argparse.Namespace) -> dict:
    """Peak RSS of a process that builds the model and runs two inferences."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    step = _inference_step(builders_for(args.backbone)[name](args.backbone, box_score_thresh=args.score_thresh).eval(),
                           torch.rand(3, args.height, args.width), AUTOCAST.get(name))
    detections = [step() for _ in range(2)][-1]
    return {"peak_rss_mib": peak_rss_mib(), "detections": detections}


def _child(target, name: str, args: argparse.Namespace, queue: mp.Queue) -> None:
    try:
        queue.put(target(name, args))
    except BaseException:  # report, don't leave the parent waiting
        queue.put({"error": traceback.format_exc()})


def run_in_child(name: str, args: argparse.Namespace, target=_measure_memory) -> dict:
    """Runs ``target(name, args) -> dict`` in a fresh (spawned) process, for its own peak RSS, and returns the dict."""
    ctx = mp.get_context("spawn")  # fork slows torch CPU kernels down 5-10x here
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(target, name, args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    if "error" in result:
        raise RuntimeError(f"{name} failed in its child process:\n{result['error']}")
    return result


def builders_for(backbone: str) -> dict[str, Callable[..., nn.Module]]:
    """The models compared for ``backbone``: ours, torchvision's from the same parts and, for VGG16,
    issue 13's torchvision-native configuration at its default width and at 4096."""
    return {**BUILDERS, **(NATIVE_BUILDERS if backbone == "vgg16" else {})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", default="vgg16", choices=["vgg16", "small", "resnet18", "resnet50", "alexnet"])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--score-thresh", type=float, default=0.0,
                        help="test score threshold of both models (0: both return 100 detections, the "
                             "worst case; with random weights 0.05 keeps arbitrary, different numbers)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-RSS child processes")
    args = parser.parse_args()
    print(f"backbone={args.backbone} image={args.height}x{args.width} (resized to 600 short side) "
          f"threads={args.threads} runs={args.runs} warmup={args.warmup} score_thresh={args.score_thresh}")
    builders = builders_for(args.backbone)
    memory = {name: ({} if args.no_memory else run_in_child(name, args)) for name in builders}
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    image = torch.rand(3, args.height, args.width)
    models = {name: build(args.backbone, box_score_thresh=args.score_thresh).eval() for name, build in builders.items()}
    rois = {name: count_rois(model) for name, model in models.items()}
    steps = {name: _inference_step(model, image, AUTOCAST.get(name)) for name, model in models.items()}
    times = interleaved_times(steps, args.runs, args.warmup)
    medians = {name: statistics.median(t) for name, t in times.items()}
    for name in builders:
        mem = memory[name]
        extra = f"  peak RSS {mem['peak_rss_mib']:7.0f} MiB  detections {mem['detections']}" if mem else ""
        print(f"{name:>15s}: median {1000 * medians[name]:8.1f} ms  min {1000 * min(times[name]):8.1f} ms  "
              f"RoIs into the box head {rois[name][-1]}  fc7 width {head_width(models[name])}{extra}")
    for mine in ("ours", "ours_fp32_fast", "ours_bf16"):
        for name in builders:
            if not name.startswith("ours"):
                print(f"latency ratio {mine} / {name}: median {medians[mine] / medians[name]:.3f}  "
                      f"min {min(times[mine]) / min(times[name]):.3f}")


if __name__ == "__main__":
    main()
