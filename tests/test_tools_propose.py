"""tools/propose.py and tools/eval.py proposals end to end: resumable, refuses stale folders, one-line errors."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

import eval as eval_tool  # noqa: E402
import propose as propose_tool  # noqa: E402
from _common import run_cli  # noqa: E402

from visiontasks.data.proposals import read_manifest, read_proposals  # noqa: E402
from visiontasks.detection.proposals import proposal_params  # noqa: E402

# per image: (x1, y1, x2, y2) inclusive 0-based, one flat-coloured "box" object each
OBJECTS = {"img0": (10, 20, 69, 79), "img1": (80, 10, 149, 59), "img2": (30, 40, 99, 109)}
FAST = ["--resize-width", "0", "--min-size", "0"]  # propose at the 160 px size: quick


def _voc_tree(root: Path) -> Path:
    for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / folder).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k, (image_id, (x1, y1, x2, y2)) in enumerate(OBJECTS.items()):
        img = np.full((120, 160, 3), 90 + 40 * k, np.uint8)
        img[y1:y2 + 1, x1:x2 + 1] = rng.integers(0, 256, 3, dtype=np.uint8)
        Image.fromarray(img).save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)
        (root / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><size><width>160</width><height>120</height><depth>3</depth></size>"
            f"<object><name>box</name><difficult>0</difficult><bndbox><xmin>{x1 + 1}</xmin><ymin>{y1 + 1}</ymin>"
            f"<xmax>{x2 + 1}</xmax><ymax>{y2 + 1}</ymax></bndbox></object></annotation>")
    (root / "ImageSets/Main/test.txt").write_text("\n".join(OBJECTS) + "\n")
    return root


def _tool(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "tools" / name), *args], capture_output=True, text=True,
                          timeout=300, cwd=REPO)


def _run(main, argv, capsys) -> tuple[int, str, str]:
    rc = run_cli(main, argv)
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def proposed(tmp_path_factory) -> tuple[Path, Path]:
    """A 3-image VOC tree and its proposals made by a 2-worker subprocess run."""
    base = tmp_path_factory.mktemp("propose")
    root, out = _voc_tree(base / "VOC"), base / "props"
    proc = _tool("propose.py", "--root", str(root), "--split", "test", *FAST, "--workers", "2", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "3 images proposed, 0 skipped" in proc.stdout
    return root, out


def test_propose_writes_one_file_per_image_manifest_and_timing(proposed):
    root, out = proposed
    assert sorted(p.name for p in out.iterdir()) == ["img0.npy", "img1.npy", "img2.npy", "manifest.json",
                                                     "timing.json"]
    assert read_manifest(out)["params"] == proposal_params(resize_width=None, min_size=0)
    timing = json.loads((out / "timing.json").read_text())["seconds"]
    assert sorted(timing) == sorted(OBJECTS) and all(v > 0 for v in timing.values())
    for image_id, box in OBJECTS.items():
        boxes = read_proposals(out, image_id).numpy()
        assert (boxes == np.array(box, np.float32)).all(axis=1).any(), image_id  # the flat object itself


def test_second_run_skips_everything_and_resume_recomputes_the_same(proposed, capsys, tmp_path):
    root, out = proposed
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.npy")}
    rc, stdout, err = _run(propose_tool.main, ["--root", str(root), "--split", "test", *FAST, "--out", str(out)],
                           capsys)
    assert rc == 0, err
    assert "0 images proposed, 3 skipped" in stdout
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.npy")} == stamps
    # a copy with one file removed (as after a kill): only that image is redone, identically
    copy = tmp_path / "copy"
    copy.mkdir()
    for p in out.iterdir():
        copy.joinpath(p.name).write_bytes(p.read_bytes())
    (copy / "img1.npy").unlink()
    rc, stdout, err = _run(propose_tool.main, ["--root", str(root), "--split", "test", *FAST, "--out", str(copy)],
                           capsys)
    assert rc == 0, err
    assert "1 images proposed, 2 skipped" in stdout
    np.testing.assert_array_equal(read_proposals(copy, "img1"), read_proposals(out, "img1"))


def test_other_params_refused_unless_overwrite(proposed, capsys, tmp_path):
    root, out = proposed
    copy = tmp_path / "copy"
    copy.mkdir()
    for p in out.iterdir():
        copy.joinpath(p.name).write_bytes(p.read_bytes())
    argv = ["--root", str(root), "--split", "test", "--resize-width", "0", "--min-size", "30", "--out", str(copy)]
    rc, _, err = _run(propose_tool.main, argv, capsys)
    assert rc == 2 and err.count("\n") == 1
    assert str(copy / "manifest.json") in err and "min_size=0" in err and "min_size=30.0" in err
    assert "--overwrite" in err
    rc, stdout, err = _run(propose_tool.main, [*argv, "--overwrite"], capsys)
    assert rc == 0, err
    assert "3 images proposed, 0 skipped" in stdout
    assert read_manifest(copy)["params"]["min_size"] == 30
    assert all(len(read_proposals(copy, i)) < len(read_proposals(out, i)) for i in OBJECTS)


def test_propose_bad_input_is_one_line(tmp_path, capsys):
    root = _voc_tree(tmp_path / "VOC")
    (root / "JPEGImages" / "img2.jpg").unlink()
    rc, _, err = _run(propose_tool.main, ["--root", str(root), "--split", "test", "--out", str(tmp_path / "o")],
                      capsys)
    assert rc == 2 and err.count("\n") == 1 and "img2.jpg" in err
    rc, _, err = _run(propose_tool.main, ["--root", str(root), "--split", "val", "--out", str(tmp_path / "o")],
                      capsys)
    assert rc == 2 and "val.txt" in err
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "x.npy").write_bytes(b"")
    (root / "JPEGImages" / "img2.jpg").write_bytes((root / "JPEGImages" / "img1.jpg").read_bytes())
    rc, _, err = _run(propose_tool.main, ["--root", str(root), "--split", "test", "--out", str(stray)], capsys)
    assert rc == 2 and "no manifest.json" in err


def test_eval_proposals_writes_the_figures(proposed, tmp_path):
    root, out = proposed
    proc = _tool("eval.py", "proposals", "--root", str(root), "--split", "test", "--classes", "box",
                 "--proposals", str(out), "--out", str(tmp_path / "r.json"), "--plot", str(tmp_path / "r.png"))
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "r.json").read_text())
    assert sorted(result) == sorted(["recall_50", "recall_70", "average_recall", "mabo", "boxes_per_image",
                                     "seconds_per_image"])
    assert result["recall_50"] == result["recall_70"] == result["average_recall"] == result["mabo"] == 1.0
    assert result["boxes_per_image"] >= 1 and result["seconds_per_image"] > 0
    assert "recall@0.5" in proc.stdout and (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("damage, problem", [
    (lambda p: p.unlink(), "not found"),
    (lambda p: p.write_bytes(b"garbage"), "cannot read proposals"),
    (lambda p: np.save(p, np.zeros((0, 4), np.float32)), "no proposals for this image"),
])
def test_eval_bad_proposal_file_is_one_line(proposed, tmp_path, capsys, damage, problem):
    root, out = proposed
    copy = tmp_path / "copy"
    copy.mkdir()
    for p in out.iterdir():
        copy.joinpath(p.name).write_bytes(p.read_bytes())
    damage(copy / "img1.npy")
    rc, _, err = _run(eval_tool.main, ["proposals", "--root", str(root), "--split", "test", "--classes", "box",
                                       "--proposals", str(copy)], capsys)
    assert rc == 2
    line = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(line) == 1 and str(copy / "img1.npy") in line[0] and problem in line[0]


def test_eval_proposals_needs_a_folder_or_table(tmp_path, capsys):
    root = _voc_tree(tmp_path / "VOC")
    rc, _, err = _run(eval_tool.main, ["proposals", "--root", str(root), "--split", "test"], capsys)
    assert rc == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--proposals" in lines[0] and "--table" in lines[0]


def test_propose_paper_mode_with_seed_writes_its_parameters(tmp_path, capsys):
    root, out = _voc_tree(tmp_path / "VOC"), tmp_path / "props"
    rc, _, err = _run(propose_tool.main, ["--root", str(root), "--split", "test", *FAST, "--mode", "paper",
                                          "--seed", "3", "--out", str(out)], capsys)
    assert rc == 0, err
    params = read_manifest(out)["params"]
    assert params["mode"] == "paper" and params["seed"] == 3
    assert all(read_proposals(out, i).shape[1] == 4 for i in OBJECTS)


@pytest.mark.slow
def test_eval_proposals_table_runs_every_mode(tmp_path, capsys):
    root = _voc_tree(tmp_path / "VOC")
    rc, out, err = _run(eval_tool.main, ["proposals", "--root", str(root), "--split", "test", "--table",
                                         "--classes", "box", "--images", "1"], capsys)
    assert rc == 0, err
    for row in ("paper", "fast", "quality", "paper + 20 px filter", "Uijlings 2013 VOC07 fast"):
        assert any(line.startswith(row) for line in out.splitlines()), row
