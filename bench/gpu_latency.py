"""CUDA latency of the lineage models and one fp16 training step, printed side by side (needs a GPU).

Random weights, one 480×640 image, batch 1, channels-last, ``cudnn.benchmark``; each model in fp32
and under ``torch.autocast("cuda")`` in bf16 and fp16 (median and minimum of 10 after 3 warm-ups,
``torch.cuda.synchronize`` around each call); then one SGD step at batch 2 with fp16 autocast and a
``GradScaler``, as ``train.amp: auto`` trains on CUDA. Fast R-CNN gets 2,000 random boxes as its
proposals. Figures are printed, never asserted.

    python bench/gpu_latency.py
"""
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from visiontasks import get_model  # noqa: E402

if not torch.cuda.is_available():
    sys.exit("bench/gpu_latency.py needs a CUDA device; none is visible")
print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}")

torch.backends.cudnn.benchmark = True
image = torch.rand(3, 480, 640, device="cuda")
for name, kw in (("faster_rcnn", {"backbone": "vgg16"}), ("yolov1", {}), ("fast_yolo", {}),
                 ("fast_rcnn", {"backbone": "vgg16"})):
    model = get_model(name, num_classes=21, **kw).cuda().eval().to(memory_format=torch.channels_last)
    model.score_thresh = 0.05
    extra = {}
    if getattr(model, "needs_proposals", False):
        g = torch.Generator().manual_seed(0)
        xy = torch.rand(2000, 2, generator=g) * torch.tensor([600.0, 440.0])
        extra = {"proposals": [torch.cat((xy, xy + 16 + torch.rand(2000, 2, generator=g) * 200), 1).cuda()]}
    for precision in ("fp32", "bf16", "fp16"):
        dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        times = []
        with torch.inference_mode(), torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
            for i in range(13):
                torch.cuda.synchronize(); t0 = time.perf_counter()
                out = model([image], **extra)
                torch.cuda.synchronize(); times.append(time.perf_counter() - t0)
        times = sorted(times[3:])
        print(f"{name:12s} {precision}: median {1000 * times[len(times) // 2]:7.2f} ms  min {1000 * times[0]:7.2f} ms "
              f"({len(out[0]['boxes'])} boxes)", flush=True)
    # one training step in fp16 autocast + GradScaler, batch 2
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    scaler = torch.amp.GradScaler("cuda")
    targets = [{"boxes": torch.tensor([[50.0, 60.0, 300.0, 400.0]], device="cuda"),
                "labels": torch.tensor([3], device="cuda")} for _ in range(2)]
    train_extra = {"proposals": extra["proposals"] * 2} if extra else {}
    times = []
    for i in range(6):
        torch.cuda.synchronize(); t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.float16):
            losses = model([image, image], targets, **train_extra)
        loss = sum(losses.values())
        opt.zero_grad(); scaler.scale(loss).backward(); scaler.step(opt); scaler.update()
        torch.cuda.synchronize(); times.append(time.perf_counter() - t0)
    print(f"{name:12s} train step fp16+GradScaler batch 2: {1000 * sorted(times[2:])[1]:.1f} ms, loss {float(loss.detach()):.3f}",
          flush=True)
    del model, opt
    torch.cuda.empty_cache()
