"""tools/gallery.py end to end with tiny training runs: every picture the README lists exists, small."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gallery_writes_every_picture_it_lists(tmp_path: Path):
    out = tmp_path / "gallery"
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "gallery.py"), "--out", str(out), "--iters", "2",
                           "--num-embedded", "2", "--max-side", "200", "--photos", str(tmp_path / "no_photos")],
                          capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr
    readme = (out / "README.md").read_text()
    listed = re.findall(r"\]\(([\w.]+\.png)\)", readme)
    assert {"default_det_pr.png", "det_2it_loss.png", "seg_2it_loss.png"} <= set(listed)
    assert len([n for n in listed if n.startswith(("det_0", "seg_0"))]) == 4  # 2 embedded images x 2 models
    assert "Photographs not found (skipped)" in readme
    assert re.search(r"VOC07 mAP: \*\*\d+\.\d\d%\*\*", readme)
    for name in listed:
        with Image.open(out / name) as image:
            assert max(image.size) <= 200 or "loss" in name or "_pr" in name
    assert sorted(p.name for p in out.glob("*.png")) == sorted(set(listed))
