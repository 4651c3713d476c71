"""``visiontasks benchmark``: CPU latency, peak memory and mAP per model, precision, runtime and threads.

    from visiontasks.benchmark import Column, benchmark
    result = benchmark(["default"], [Column("fp32", "pytorch", 2), Column("int8", "onnxruntime", 2)])
    print(result["table"])

Each row (``"default"``, ``"default-seg"``, a run directory, a checkpoint, a YAML config or a
config's name under ``configs/``) is run in every column: precision (fp32 / bf16 / int8) ×
runtime (``pytorch`` / ``onnxruntime``) × threads. PyTorch int8 is not offered (torch 2.14 has no
x86 PT2E quantizer without ``torchao``; see :mod:`visiontasks.export.quantize`): that cell says so.

How it measures:

- **Latency**: one image (``image``, default the first embedded test image), every column warmed up
  (``warmup`` calls), then ``iterations`` rounds, each round calling every column once in turn
  (interleaved, so that load from other processes hits every column alike); median and minimum
  wall time per image.
- **Peak RSS** (:mod:`visiontasks.benchmark_rss`): each column again in a fresh subprocess that
  imports torch and onnxruntime, resets the kernel's peak mark (``/proc/self/clear_refs``: the
  imports' transient peak would hide a small model), loads only that model and runs it
  ``warmup + 2`` times; its ``VmHWM``. It includes the interpreter's resident libraries (reported
  once as ``baseline_rss_mib``, a subprocess that loads nothing).
- ONNX Runtime's threads are told not to spin after a run (they would steal the next PyTorch call's CPU).
- **mAP** (rows with weights, ``map_split`` given or the embedded test split for models trained on
  it): VOC07 of each (precision, runtime) on that split, through the one scoring path.

Shape shorthand: image (3, H, W) float32 in [0, 1].
"""
from __future__ import annotations

import os
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from visiontasks.benchmark_rss import probe_rss

__all__ = ["Column", "parse_columns", "benchmark", "format_table", "make_runner"]

REPO_CONFIGS = Path(__file__).resolve().parents[1] / "configs"
PRECISIONS = ("fp32", "bf16", "int8")
RUNTIMES = ("pytorch", "onnxruntime")


@dataclass(frozen=True)
class Column:
    """One column: a precision, a runtime and a thread count."""

    precision: str
    runtime: str
    threads: int

    @property
    def name(self) -> str:
        return f"{self.precision}/{self.runtime}/{self.threads}t"

    def unsupported(self) -> str | None:
        """Why this column cannot run, or None."""
        if self.precision == "int8" and self.runtime == "pytorch":
            return "PyTorch int8: not offered (use onnxruntime)"
        if self.precision == "bf16" and self.runtime == "onnxruntime":
            return "onnxruntime bf16: not offered on the CPU"
        return None


def parse_columns(precisions: Sequence[str], runtimes: Sequence[str], threads: Sequence[int]) -> list[Column]:
    """Every combination, unsupported ones left out (one line each is for the caller to print)."""
    for p in precisions:
        if p not in PRECISIONS:
            raise ValueError(f"--precision {p!r}: choose from {', '.join(PRECISIONS)}")
    for r in runtimes:
        if r not in RUNTIMES:
            raise ValueError(f"--runtime {r!r}: choose from {', '.join(RUNTIMES)}")
    if any(t < 1 for t in threads):
        raise ValueError(f"--threads must be at least 1: {list(threads)}")
    return [Column(p, r, t) for p in precisions for r in runtimes for t in threads]


def resolve_source(row: str) -> str:
    """A row as ``load_model`` takes it: a config's name under ``configs/`` becomes its path."""
    if row in ("default", "default-seg") or Path(row).exists():
        return row
    for task in ("detection", "segmentation"):
        path = REPO_CONFIGS / task / f"{row}.yaml"
        if path.is_file():
            return str(path)
    from visiontasks.errors import InputError

    raise InputError(row, "not 'default', 'default-seg', a run directory, a checkpoint, a YAML config or a config "
                          f"name under {REPO_CONFIGS}")


def _has_weights(source: str) -> bool:
    return source in ("default", "default-seg") or not source.endswith((".yaml", ".yml"))


def preset_for(source: str) -> str:
    """The detector preset a row runs at: ``evaluate`` (score ≥ 0.05) with weights, ``visualize``
    (≥ 0.7) for a config's random weights. Random weights score every box near 1/C, so at 0.05 float
    rounding decides among near-tied boxes which ones survive NMS, and the export check (PyTorch
    against onnxruntime, box for box) refuses the graph; the whole network runs at either preset."""
    return "evaluate" if _has_weights(source) else "visualize"


def _exported(source: str, precision: str, size: Sequence[int], workdir: Path, calib: dict) -> Path:
    """The row's .onnx for this precision (exported once per row into ``workdir``)."""
    import visiontasks
    from visiontasks.export.int8 import export_int8
    from visiontasks.export.onnx import export_onnx

    predictor = _predictor_info(source)
    if predictor.task == "detection":
        size = (3, 224, 288)  # detectors keep height and width dynamic: the exporter's own example size
    stem = workdir / (Path(source).stem.replace(".", "_") + "_" + "x".join(map(str, size)))
    int8, fp32 = stem.with_suffix(".onnx"), stem.with_name(stem.name + ".fp32.onnx")
    if not fp32.is_file() or (precision == "int8" and not int8.is_file()):
        predictor = visiontasks.load_model(source, preset=preset_for(source))
        name = predictor.config.get("model", {}).get("name", "model")
        if precision == "int8":
            export_int8(predictor, name, int8, size, calib_root=calib.get("root"), calib_split=calib.get("split", "trainval"),
                        calib_count=calib.get("images", 32), echo=lambda line: None)
        else:
            from visiontasks.engine.run import write_json

            export_onnx(predictor.model, predictor.task, fp32, name=name, image_size=size)
            write_json({"model": name, "task": predictor.task, "classes": list(predictor.classes)}, fp32.with_suffix(".json"))
    return int8 if precision == "int8" else fp32


def make_runner(source: str, column: Column, image: torch.Tensor, workdir: Path, calib: dict | None = None):
    """``(call, model)``: ``call()`` runs the model once on ``image`` in this column; ``model`` scores it."""
    import visiontasks

    if column.runtime == "pytorch":
        predictor = visiontasks.load_model(source, preset=preset_for(source), precision=column.precision)
        model = predictor.model.eval()
        seg = predictor.task == "segmentation"

        def call() -> None:
            torch.set_num_threads(column.threads)
            with torch.inference_mode():
                model(image[None]) if seg else model([image])
        return call, model
    from visiontasks.export.onnx_predictor import load_onnx

    path = _exported(source, column.precision, tuple(image.shape), workdir, calib or {})
    model = load_onnx(path, column.threads, spin=False)
    seg = "images" in [i.name for i in model.session.get_inputs()]
    return (lambda: model(image[None]) if seg else model([image])), model


def load_image(path: str | None, size: Sequence[int] | None) -> torch.Tensor:
    """The benchmark image: ``path`` (default the first embedded test image), resized to ``size`` (H, W)."""
    from visiontasks.api import to_tensor_image

    if path is None:
        from visiontasks.data import build_embedded_dataset

        root = build_embedded_dataset()
        path = str(root / "JPEGImages" / f"{(root / 'ImageSets/Main/test.txt').read_text().split()[0]}.jpg")
    image = to_tensor_image(path)
    if size:
        image = torch.nn.functional.interpolate(image[None], size=tuple(size), mode="bilinear", align_corners=False)[0]
    return image.contiguous()


def _map(source: str, column: Column, model, root: Path, split: str, limit: int | None) -> float:
    """VOC07 mAP (detectors) or mIoU (segmenters) in percent of ``model`` on ``split`` of ``root``."""
    from visiontasks.data import VOCDetection, VOCSegmentation
    from visiontasks.engine.evaluate import evaluate_detection, evaluate_segmentation

    info = _predictor_info(source)
    torch.set_num_threads(column.threads)
    seg = info.task == "segmentation"
    dataset = (VOCSegmentation if seg else VOCDetection)(root, split, classes=list(info.classes))
    if limit:
        dataset.ids = dataset.ids[:limit]
    with torch.inference_mode():
        if seg:
            return 100.0 * float(evaluate_segmentation(model, dataset)["mIoU"])
        return 100.0 * float(evaluate_detection(model, dataset)["mAP"])


_INFO: dict[str, Any] = {}


def _predictor_info(source: str):
    """The row's fp32 predictor (task, classes, config), loaded once."""
    import visiontasks

    if source not in _INFO:
        _INFO[source] = visiontasks.load_model(source)
    return _INFO[source]


def benchmark(rows: Sequence[str], columns: Sequence[Column], image_path: str | None = None,
              size: Sequence[int] | None = None, warmup: int = 2, iterations: int = 10, rss: bool = True,
              map_root: str | None = None, map_split: str = "test", map_images: int | None = None,
              workdir: str | os.PathLike | None = None, calib: dict | None = None,
              progress: bool = True) -> dict[str, Any]:
    """Measures every row in every column; see the module docstring for how.

    Args:
        rows: models (see :func:`resolve_source`).
        columns: from :func:`parse_columns`.
        image_path, size: the image timed and its (H, W) (segmenters are exported for it).
        warmup, iterations: calls per column before timing, and interleaved timed rounds.
        rss: measure peak RSS per column (a subprocess each).
        map_root, map_split, map_images: score rows with weights on this VOC-layout split (default:
            the embedded test split for models trained on the embedded data; others: no mAP).
        workdir: where exports go (default a folder under the system's temporary directory).
        calib: int8 calibration ``{"root", "split", "images"}`` (default: the model's embedded data).

    Returns:
        ``{"rows": {row: {column: cell}}, "columns": [...], "image": ..., "table": markdown,
        "baseline_rss_mib": float | None}``; a cell is ``{"median_ms", "min_ms", "peak_rss_mib",
        "map"}`` or ``{"skipped": reason}``.
    """
    import tempfile

    from tqdm import tqdm

    image = load_image(image_path, size)
    workdir = Path(workdir or tempfile.mkdtemp(prefix="visiontasks-benchmark-"))
    workdir.mkdir(parents=True, exist_ok=True)
    sources = {row: resolve_source(row) for row in rows}
    cells: dict[str, dict[str, dict]] = {row: {} for row in rows}
    runners: list[tuple[str, Column, Callable[[], Any]]] = []
    models: dict[tuple[str, str, str], Any] = {}
    for row in tqdm(rows, desc="load", disable=not progress, leave=False):
        for col in columns:
            if (why := col.unsupported()) is not None:
                cells[row][col.name] = {"skipped": why}
                continue
            try:
                call, model = make_runner(sources[row], col, image, workdir, calib)
            except ValueError as exc:  # ExportError / InputError: this cell cannot run; the others still do
                cells[row][col.name] = {"skipped": str(exc).splitlines()[0][:200]}
                continue
            runners.append((row, col, call))
            models.setdefault((row, col.precision, col.runtime), (col, model))
    times: dict[tuple[str, str], list[float]] = {(r, c.name): [] for r, c, _ in runners}
    for _ in tqdm(range(warmup), desc="warm-up", disable=not progress, leave=False):
        for _, _, call in runners:
            call()
    for _ in tqdm(range(iterations), desc="timing (interleaved)", disable=not progress, leave=False):
        for row, col, call in runners:
            start = time.perf_counter()
            call()
            times[(row, col.name)].append(1000.0 * (time.perf_counter() - start))
    baseline = probe_rss("none", None, image_path, size, workdir, 0) if rss and runners else None
    for row, col, _ in tqdm(runners, desc="peak RSS", disable=not progress or not rss, leave=False):
        samples = times[(row, col.name)]
        cells[row][col.name] = {"median_ms": statistics.median(samples), "min_ms": min(samples),
                                "peak_rss_mib": probe_rss(sources[row], col, image_path, size, workdir, warmup)
                                if rss else None, "map": None}
    for (row, precision, runtime), (col, model) in tqdm(models.items(), desc="mAP", disable=not progress, leave=False):
        root = map_root
        if root is None and _has_weights(sources[row]):
            data = _predictor_info(sources[row]).config.get("data", {}) or {}
            if data.get("dataset", "embedded") == "embedded":
                from visiontasks.data import build_embedded_dataset

                root = str(build_embedded_dataset(data.get("root")))
        if root is None or not _has_weights(sources[row]) or "skipped" in cells[row].get(col.name, {}):
            continue
        score = _map(sources[row], col, model, Path(root), map_split, map_images)
        for c in columns:
            if c.precision == precision and c.runtime == runtime and "skipped" not in cells[row][c.name]:
                cells[row][c.name]["map"] = score
    result = {"rows": cells, "columns": [asdict(c) | {"name": c.name} for c in columns],
              "image": {"path": image_path or "first embedded test image", "size": list(image.shape)},
              "warmup": warmup, "iterations": iterations, "baseline_rss_mib": baseline,
              "map_split": map_split if any(c.get("map") is not None for r in cells.values() for c in r.values()) else None}
    result["table"] = format_table(result)
    return result


def format_table(result: dict[str, Any]) -> str:
    """The markdown table: one line per row and column (median / min ms, peak RSS MiB, mAP %)."""
    lines = ["| model | precision | runtime | threads | median ms | min ms | peak RSS MiB | mAP |",
             "|---|---|---|---|---:|---:|---:|---:|"]
    for row, cols in result["rows"].items():
        for col in result["columns"]:
            cell = cols[col["name"]]
            head = f"| {row} | {col['precision']} | {col['runtime']} | {col['threads']} |"
            if "skipped" in cell:
                lines.append(f"{head} – | – | – | {cell['skipped']} |")
                continue
            rss = "–" if cell["peak_rss_mib"] is None else f"{cell['peak_rss_mib']:.0f}"
            score = "–" if cell["map"] is None else f"{cell['map']:.2f}"
            lines.append(f"{head} {cell['median_ms']:.1f} | {cell['min_ms']:.1f} | {rss} | {score} |")
    return "\n".join(lines)
