"""Peak resident memory of one benchmark column, measured in a fresh process (``visiontasks benchmark``).

:func:`probe_rss` runs ``python -m visiontasks.benchmark_rss SPEC``: a subprocess that imports torch
and onnxruntime, resets the kernel's peak mark (``/proc/self/clear_refs``: the imports' transient
peak would hide a small model), loads only that column's model, runs it ``warmup + 2`` times and
prints its ``VmHWM``. ``source="none"`` loads nothing: the interpreter's baseline.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

__all__ = ["probe_rss"]


def probe_rss(source: str, column: Any, image_path: str | None, size: Sequence[int] | None, workdir: Path,
              warmup: int) -> float:
    """Peak RSS (MiB) of a fresh process that loads this column's model and runs it ``warmup + 2`` times.

    Args:
        source: the row (a resolved model source), or ``"none"`` for the baseline.
        column: the :class:`visiontasks.benchmark.Column` (None for the baseline).
        image_path: the image to run on (None: the first embedded test image).
        size: resize the image to this (H, W), or None.
        workdir: where exported ONNX files are kept.
        warmup: untimed calls before the two that count.

    Returns:
        The subprocess's ``VmHWM`` in MiB.

    Raises:
        RuntimeError: the subprocess failed (its last stderr line quoted).
    """
    spec = json.dumps({"source": source, "column": asdict(column) if column else None, "image": image_path,
                       "size": list(size) if size else None, "workdir": str(workdir), "warmup": warmup})
    done = subprocess.run([sys.executable, "-m", "visiontasks.benchmark_rss", spec], capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": str(column.threads if column else 1)})
    if done.returncode != 0:
        raise RuntimeError(f"peak-RSS probe of {source} {column.name if column else ''} failed: "
                           f"{(done.stderr.strip().splitlines() or ['?'])[-1]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["rss_mib"])


def _reset_peak() -> None:
    """Resets the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux >= 4.0; else a no-op)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _peak_since_reset() -> float:
    """VmHWM in MiB (``ru_maxrss`` where /proc is not readable)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _probe_main(spec: dict) -> None:
    """The peak-RSS subprocess: load one column's model, run it, print ``{"rss_mib"}``."""
    import onnxruntime  # noqa: F401  (the baseline includes both runtimes' libraries)

    from visiontasks.benchmark import Column, load_image, make_runner

    _reset_peak()  # the imports' transient peak would hide a small model's
    if spec["source"] != "none":
        col = Column(**spec["column"])
        image = load_image(spec["image"], spec["size"])
        call, _ = make_runner(spec["source"], col, image, Path(spec["workdir"]))
        for _ in range(spec["warmup"] + 2):
            call()
    print(json.dumps({"rss_mib": _peak_since_reset()}))


if __name__ == "__main__":
    _probe_main(json.loads(sys.argv[1]))
