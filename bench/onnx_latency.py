"""PyTorch against onnxruntime on the same exported models, interleaved in one process (CPU).

For each model: export it with ``visiontasks.export.export_onnx`` (which checks the graph), then
alternate one PyTorch forward (``torch.inference_mode``) and one onnxruntime run on the same image,
``--runs`` times after one warm-up each, and print the median wall time of both and their ratio.
Both use ``--threads`` intra-op threads (onnxruntime's without spin-waiting, which would
otherwise take the cores from the PyTorch pass that follows). Models: the shipped default detector on an embedded test
image, YOLOv1 and the small FCN on the small backbone (random weights, which changes nothing in
the work done by the FCN; the detectors' later stages depend on how many boxes pass).

    python bench/onnx_latency.py [--runs 10] [--threads 2]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import visiontasks  # noqa: E402
from visiontasks.api import to_tensor_image  # noqa: E402
from visiontasks.data import build_embedded_dataset  # noqa: E402
from visiontasks.export import export_onnx  # noqa: E402


def _models(tmp: Path) -> list[tuple[str, torch.nn.Module, str, torch.Tensor]]:
    root = build_embedded_dataset(tmp / "embedded", seed=0)
    image = to_tensor_image(root / "JPEGImages" / "000300.jpg")
    torch.manual_seed(0)
    yolo = visiontasks.get_model("yolov1", num_classes=4, backbone="small", input_size=160, head="conv", fc_dim=256)
    fcn = visiontasks.get_model("fcn_small", num_classes=4)
    return [("default (faster_rcnn small, trained)", visiontasks.load_model("default").model, "detection", image),
            ("yolov1 small (random)", yolo.eval(), "detection", image),
            ("fcn_small (random)", fcn.eval(), "segmentation", image)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import onnxruntime

    print(f"| model | image | PyTorch ms | onnxruntime ms | PyTorch / onnxruntime |\n|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, model, task, image in _models(Path(tmp)):
            path = Path(tmp) / "m.onnx"
            export_onnx(model, task, path, image_size=tuple(image.shape))
            opts = onnxruntime.SessionOptions()
            opts.intra_op_num_threads = args.threads
            # onnxruntime's threads otherwise spin after each run and steal the cores PyTorch runs on next
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            session = onnxruntime.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            feed = {"image": image.numpy()} if task == "detection" else {"images": image[None].numpy()}
            run_torch = (lambda: model([image])) if task == "detection" else (lambda: model(image[None]))
            times: dict[str, list[float]] = {"torch": [], "ort": []}
            with torch.inference_mode():
                run_torch()
                session.run(None, feed)
                for _ in range(args.runs):
                    t = time.perf_counter()
                    run_torch()
                    times["torch"].append(time.perf_counter() - t)
                    t = time.perf_counter()
                    session.run(None, feed)
                    times["ort"].append(time.perf_counter() - t)
            pt, ort = (1000 * statistics.median(times[k]) for k in ("torch", "ort"))
            print(f"| {name} | {'x'.join(map(str, image.shape[1:]))} | {pt:.1f} | {ort:.1f} | {pt / ort:.2f} |")


if __name__ == "__main__":
    main()
