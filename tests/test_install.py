"""A real install: the wheel carries the default weights, configs and tools; the ``visiontasks`` command."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from visiontasks import cli

REPO = Path(__file__).resolve().parents[1]
#: what a wheel is built from (setup.py copies weights/, configs/ and tools/ into the package)
SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "visiontasks", "tools", "weights", "configs")


def test_cli_dispatches_to_the_tools(capsys: pytest.CaptureFixture[str]) -> None:
    saved = list(sys.path)
    assert cli.main(["summary", "fcn_small", "--input", "3x32x32", "--set", "num_classes=3"]) == 0
    assert "parameters:" in capsys.readouterr().out
    assert sys.path == saved  # the tools' folder is on the path only while they are imported
    assert cli.main(["summary", "fcn_small", "--input", "3x3"]) == 2  # the tool's one-line errors
    assert "'3x3'" in capsys.readouterr().err
    assert cli.main(["no-such-command"]) == 2
    assert "unknown command 'no-such-command'" in capsys.readouterr().err
    assert cli.main([]) == 2 and cli.main(["--help"]) == 0
    assert set(cli.COMMANDS.values()) <= {p.stem for p in cli.tools_dir().glob("*.py")}
    with pytest.raises(SystemExit) as exc:
        cli.main(["predict", "--help"])
    assert exc.value.code == 0 and "usage: visiontasks predict" in capsys.readouterr().out


def _build_wheel(dest: Path) -> Path:
    """sdist from a copy of the repository, then the wheel from the unpacked sdist (``python -m build``'s
    path, which also proves MANIFEST.in carries what setup.py copies)."""
    import tarfile

    src = dest / "src"
    src.mkdir()
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(path, src / name)
    code = f"from setuptools import build_meta as b; print(b.build_sdist({str(dest / 'sdist')!r}))"
    subprocess.run([sys.executable, "-c", code], cwd=src, check=True, capture_output=True, timeout=600)
    (sdist,) = (dest / "sdist").glob("visiontasks-*.tar.gz")
    with tarfile.open(sdist) as tar:
        tar.extractall(dest / "unpacked", filter="data")
    (unpacked,) = (dest / "unpacked").iterdir()
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(dest / "dist"), str(unpacked)], check=True, capture_output=True, timeout=600)
    (wheel,) = (dest / "dist").glob("visiontasks-*.whl")
    return wheel


@pytest.mark.slow
def test_wheel_installs_and_predicts_with_the_default_weights(tmp_path: Path, embedded_root: Path) -> None:
    wheel = _build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"visiontasks/_weights/default_det.pt", "visiontasks/_weights/default_seg.pt",
            "visiontasks/tools/predict.py", "visiontasks/tools/_common.py",
            "visiontasks/configs/detection/default.yaml", "visiontasks/configs/segmentation/default.yaml"} <= names
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=300)
    bindir = venv / ("Scripts" if sys.platform == "win32" else "bin")
    subprocess.run([str(bindir / "python"), "-m", "pip", "install", "--no-deps", "-q", str(wheel)], check=True,
                   capture_output=True, timeout=600)
    outside = tmp_path / "elsewhere"  # not the checkout: nothing can be found relative to it
    outside.mkdir()
    where = subprocess.run([str(bindir / "python"), "-c", "import visiontasks.api as a; print(a.__file__); "
                            "print(a.DEFAULT_WEIGHTS)"], cwd=outside, capture_output=True, text=True, check=True)
    module, weights = where.stdout.split()
    assert module.startswith(str(venv)) and weights.startswith(str(venv))
    image = sorted((embedded_root / "JPEGImages").glob("*.*"))[0]
    done = subprocess.run([str(bindir / "visiontasks"), "predict", str(image), "--out", "preds"], cwd=outside,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "detections ->" in done.stdout
    assert (outside / "preds" / f"{image.stem}_pred.png").is_file()
    lines = [line for line in done.stdout.splitlines() if line.startswith("  ")]
    assert lines and all(line.split()[0] in ("circle", "square", "triangle") for line in lines)
    # the default segmenter: load_model("default-seg") reads the wheel's copy and gives a mask of the image's size
    code = ("import sys, visiontasks, visiontasks.api as a; p = visiontasks.load_model('default-seg'); "
            "m = p.predict(sys.argv[1]).mask; print(a.DEFAULT_SEG_WEIGHTS, p.task, *m.shape, *m.unique().tolist())")
    seg = subprocess.run([str(bindir / "python"), "-c", code, str(image)], cwd=outside, capture_output=True, text=True,
                         timeout=600)
    assert seg.returncode == 0, seg.stderr
    seg_weights, task, height, width, *labels = seg.stdout.split()
    assert seg_weights.startswith(str(venv)) and seg_weights.endswith("default_seg.pt") and task == "segmentation"
    assert (int(width), int(height)) == Image.open(image).size
    assert {int(v) for v in labels} <= {0, 1, 2, 3} and len(labels) >= 2  # background and a shape
    done = subprocess.run([str(bindir / "visiontasks"), "predict", "--task", "seg", str(image), "--out", "seg_preds"],
                          cwd=outside, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "classes [" in done.stdout and (outside / "seg_preds" / f"{image.stem}_pred.png").is_file()
    # train-det with the shipped default config writes its run under the current folder, not the package
    fast = ["train.max_iters=1", "train.batch_size=1", "train.warmup_iters=0", "train.log_every=1",
            "train.checkpoint_every=1", "data.num_workers=0", f"data.root={embedded_root.parent}"]
    done = subprocess.run([str(bindir / "visiontasks"), "train-det", "--device", "cpu", *fast], cwd=outside,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    assert (outside / "runs" / "detection" / "default" / "checkpoint_last.pt").is_file()
    assert not (Path(module).parent / "runs").exists()
