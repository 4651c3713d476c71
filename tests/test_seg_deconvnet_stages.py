"""DeconvNet's two training stages: object boxes, object-centred crops, the config, kill and resume."""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from _reliability import tiny  # noqa: F401 (fixture)
from _reliability import REPO, call, one_error_line, seg_args, train_seg

from visiontasks.engine.checkpoint import load_checkpoint
from visiontasks.errors import InputError
from visiontasks.segmentation.deconvnet.stages import ObjectCrops, object_boxes, parse_stages

CONFIG = REPO / "configs" / "segmentation" / "fcn_small_twostage_embedded.yaml"
STAGES = {"stage1": {"max_iters": 5}, "stage2": {"windows": "full"}}


def test_object_boxes_are_the_connected_regions_of_each_class_or_the_instances():
    mask = torch.zeros(6, 8, dtype=torch.int64)
    mask[0:2, 0:3] = 1          # class 1, region A
    mask[4:6, 5:8] = 1          # class 1, region B (not touching A)
    mask[2:4, 3:5] = 2          # class 2
    mask[5, 0] = 255            # ignored
    assert sorted(object_boxes(mask).tolist()) == [[0, 0, 2, 1], [3, 2, 4, 3], [5, 4, 7, 5]]
    assert object_boxes(mask, min_pixels=5).tolist() == [[0, 0, 2, 1], [5, 4, 7, 5]]
    inst = torch.zeros(6, 8, dtype=torch.int64)
    inst[0:2, 0:3], inst[4:6, 5:8] = 1, 1  # one instance in two pieces
    assert object_boxes(mask, inst).tolist() == [[0, 0, 7, 5]]
    assert object_boxes(torch.zeros(4, 4, dtype=torch.int64)).shape == (0, 4)


class _Items:
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def test_object_crop_is_centred_enlarged_and_black_with_ignore_label_outside_the_image():
    # One 4x4 object in the corner of an 8x10 image: enlarged x2 about its centre (1.5, 1.5) it is the
    # 8x8 window -2..5, two rows and columns outside the image. resize = crop = 8: no resampling.
    image = torch.rand(3, 8, 10)
    mask = torch.zeros(8, 10, dtype=torch.int64)
    mask[0:4, 0:4] = 2
    crops = ObjectCrops(_Items([(image, {"mask": mask, "image_id": "a"})]), enlarge=2.0, resize=8, crop_size=8,
                        hflip_prob=0.0)
    img, target = crops[0]
    assert target["window"].tolist() == [-2, -2, 5, 5] and target["image_id"] == "a"
    assert torch.equal(img[:, 2:, 2:], image[:, 0:6, 0:6])
    assert torch.equal(img[:, :2], torch.zeros(3, 2, 8)) and torch.equal(img[:, :, :2], torch.zeros(3, 8, 2))
    expected = torch.full((8, 8), 255)
    expected[2:, 2:] = 0
    expected[2:6, 2:6] = 2
    assert torch.equal(target["mask"], expected)
    flipped = ObjectCrops(crops.base, enlarge=2.0, resize=8, crop_size=8, hflip_prob=1.0)[0]
    assert torch.equal(flipped[1]["mask"], expected.flip(-1)) and torch.equal(flipped[0], img.flip(-1))


def test_object_crop_resizes_to_resize_then_crops_crop_size():
    torch.manual_seed(0)
    mask = torch.zeros(40, 50, dtype=torch.int64)
    mask[10:30, 20:35] = 1
    crops = ObjectCrops(_Items([(torch.rand(3, 40, 50), {"mask": mask})]), resize=25, crop_size=20)
    img, target = crops[0]
    assert img.shape == (3, 20, 20) and target["mask"].shape == (20, 20)
    assert set(target["mask"].unique().tolist()) <= {0, 1}
    # 15x20 object -> window 18x24: the object covers 15/18 x 20/24 of the 25x25 resize
    assert target["window"].tolist() == [19, 8, 36, 31]


def test_an_image_without_objects_gives_the_whole_image():
    crops = ObjectCrops(_Items([(torch.rand(3, 6, 7), {"mask": torch.zeros(6, 7, dtype=torch.int64)})]),
                        resize=4, crop_size=4)
    assert crops[0][1]["window"].tolist() == [0, 0, 6, 5]


@pytest.mark.parametrize("stages, key", [
    ({"stage1": {"max_iters": 5}}, "model.stages.stage2"),
    ({"stage2": {"windows": "full"}}, "model.stages.stage1"),
    ({"stage1": {}, "stage2": {"windows": "full"}}, "model.stages.stage1.max_iters"),
    ({"stage1": {"max_iters": 5, "size": 3}, "stage2": {"windows": "full"}}, "model.stages.stage1.size"),
    ({"stage1": {"max_iters": 5, "crop_size": 300}, "stage2": {"windows": "full"}}, "model.stages.stage1.crop_size"),
    ({"stage1": {"max_iters": 5}, "stage2": {"windows": "edges"}}, "model.stages.stage2.windows"),
    ({"stage1": {"max_iters": 5}, "stage2": {"windows": "full", "min_iou": 0.5}}, "model.stages.stage2.min_iou"),
    ({"stage1": {"max_iters": 5}, "stage2": {"windows": "proposals", "min_iou": 0}}, "model.stages.stage2.min_iou"),
    ({"stage1": {"max_iters": 5}, "stage2": {"windows": "proposals", "resize": 10}}, "model.stages.stage2.crop_size"),
    ({"stage1": {"max_iters": 5}, "stage2": {}, "stage3": {}}, "model.stages.stage3"),
    ([1, 2], "model.stages"),
])
def test_bad_stages_name_the_key(stages, key):
    with pytest.raises(InputError) as err:
        parse_stages(stages)
    assert str(err.value).startswith(f"{key}:") and "\n" not in str(err.value)


def test_the_model_declares_the_two_stages():
    from visiontasks.registry import get_model

    stages = get_model("fcn_small", num_classes=3, stages=STAGES).training_stages()
    assert [s.name for s in stages] == ["stage1_object_crops", "stage2_full_images"]
    assert stages[0].folders == ("stage1",) and stages[0].skip_when_done and stages[0].needs_trainer
    assert not stages[1].skip_when_done and stages[1].needs_trainer


def test_a_config_missing_a_stage_is_one_line_and_writes_nothing(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    text = CONFIG.read_text()
    assert "    stage2:\n      windows: full\n" in text
    config = tmp_path / "one_stage.yaml"
    config.write_text(text.replace("    stage2:\n      windows: full\n", ""))
    rc, _, err = call(train_seg.main, ["--config", str(config), *seg_args(tiny, out)], capsys)
    assert rc == 2
    assert one_error_line(err).startswith("error: model.stages.stage2: missing")
    assert not out.exists()


def _args(root: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, str(REPO / "tools" / "train_seg.py"), "--config", str(CONFIG),
            *seg_args(root, out, "train.max_iters=8", "model.stages.stage1.max_iters=8", *extra)]


def _kill_when(proc: subprocess.Popen, ckpt: Path, iteration: int) -> None:
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if ckpt.is_file():
            try:
                if load_checkpoint(ckpt)["iteration"] >= iteration:
                    break
            except InputError:
                pass
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.kill()
    proc.wait()


def _rows(path: Path) -> list[tuple[str, str]]:
    with open(path) as f:
        return [(r["iteration"], r["total_loss"]) for r in csv.DictReader(f)]


def _same_weights(a: Path, b: Path) -> None:
    wa, wb = load_checkpoint(a)["model"], load_checkpoint(b)["model"]
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


@pytest.mark.slow  # four real training processes: ~1-2 min on 2 shared cores
def test_killed_within_each_stage_and_between_them_the_run_resumes_to_the_uninterrupted_result(tiny, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    done = subprocess.run(_args(tiny, whole), env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    state = json.loads((whole / "stages.json").read_text())
    assert [state[k]["status"] for k in ("stage1_object_crops", "stage2_full_images")] == ["done", "done"]

    # 1. killed inside stage 1 (SIGKILL after its 3rd checkpoint)
    proc = subprocess.Popen(_args(tiny, cut, "train.checkpoint_every=1"), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    _kill_when(proc, cut / "stage1" / "checkpoint_last.pt", 3)
    assert json.loads((cut / "stages.json").read_text())["stage1_object_crops"]["status"] == "running"
    assert not (cut / "checkpoint_last.pt").exists()

    # 2. resumed, then killed inside stage 2
    proc = subprocess.Popen(_args(tiny, cut, "--resume", "train.checkpoint_every=1"), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _kill_when(proc, cut / "checkpoint_last.pt", 3)
    state = json.loads((cut / "stages.json").read_text())
    assert state["stage1_object_crops"]["status"] == "done" and state["stage2_full_images"]["status"] == "running"

    # 3. resumed to the end: stage 1 is skipped, stage 2 continues from its checkpoint
    res = subprocess.run(_args(tiny, cut, "--resume", "train.checkpoint_every=1"), env=env, capture_output=True,
                         text=True, timeout=900)
    assert res.returncode == 0, res.stderr
    assert "stage 1/2 (stage1_object_crops): done in an earlier run, skipped" in res.stdout
    _same_weights(whole / "stage1" / "checkpoint_last.pt", cut / "stage1" / "checkpoint_last.pt")
    _same_weights(whole / "checkpoint_last.pt", cut / "checkpoint_last.pt")
    assert _rows(whole / "stage1" / "log.csv") == _rows(cut / "stage1" / "log.csv")
    assert _rows(whole / "log.csv") == _rows(cut / "log.csv")

    # 4. killed between the stages (stage 1 done, stage 2 marked running, no checkpoint of its own yet):
    # stage 2 starts from stage 1's weights and ends where the uninterrupted run did
    between = tmp_path / "between"
    shutil.copytree(whole, between)
    for name in ("checkpoint_last.pt", "log.csv", "eval_log.jsonl", "metrics.json", "loss.png"):
        (between / name).unlink(missing_ok=True)
    shutil.rmtree(between / "tb", ignore_errors=True)
    state = json.loads((between / "stages.json").read_text())
    state["stage2_full_images"] = {"status": "running", "folders": []}
    (between / "stages.json").write_text(json.dumps(state))
    res = subprocess.run(_args(tiny, between, "--resume"), env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr
    _same_weights(whole / "checkpoint_last.pt", between / "checkpoint_last.pt")


def test_training_windows_are_the_proposals_overlapping_an_object_enlarged():
    from visiontasks.segmentation.deconvnet.windows import select_training_windows

    props = [[0, 0, 9, 9], [0, 0, 4, 9], [20, 20, 29, 29]]  # IoU with the object: 1, 50/100 = 0.5, 0
    gt = torch.tensor([[0, 0, 9, 9]])
    assert select_training_windows(props, gt, 0.5, 1.0).tolist() == [[0, 0, 9, 9], [0, 0, 4, 9]]
    assert select_training_windows(props, gt, 0.6, 1.2).tolist() == [[-1, -1, 10, 10]]
    assert select_training_windows([], gt).shape == (0, 4)
    assert select_training_windows(props, torch.zeros(0, 4)).shape == (0, 4)


def test_proposal_windows_are_cached_per_image_and_every_window_is_a_sample(tmp_path):
    from visiontasks.segmentation.deconvnet.stages import STAGE2_PROPOSAL_DEFAULTS
    from visiontasks.segmentation.deconvnet.windows import ProposalWindowStage, WindowCrops

    masks = [torch.zeros(20, 20, dtype=torch.int64) for _ in range(2)]
    masks[0][0:10, 0:10] = 1    # object box 0..9
    masks[1][10:20, 5:15] = 2   # object box (5, 10, 14, 19)
    base = _Items([(torch.rand(3, 20, 20), {"mask": m, "image_id": str(i)}) for i, m in enumerate(masks)])
    calls = []

    def proposer(image):
        calls.append(1)
        return [[0, 0, 9, 9], [5, 10, 14, 19], [0, 0, 4, 9]]

    settings = {**STAGE2_PROPOSAL_DEFAULTS, "enlarge": 1.0, "resize": 8, "crop_size": 8, "hflip_prob": 0.0}
    stage = ProposalWindowStage(settings, proposer)
    windows = stage.windows(base, tmp_path / "w")
    assert [w.tolist() for w in windows] == [[[0, 0, 9, 9], [0, 0, 4, 9]], [[5, 10, 14, 19]]]
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == ["0.npy", "1.npy"] and len(calls) == 2
    assert [w.tolist() for w in stage.windows(base, tmp_path / "w")] == [w.tolist() for w in windows]
    assert len(calls) == 2  # read back, not proposed again
    crops = WindowCrops(base, windows, resize=8, crop_size=8, hflip_prob=0.0)
    assert len(crops) == 3
    img, target = crops[2]
    assert target["window"].tolist() == [5, 10, 14, 19] and target["image_id"] == "1"
    assert img.shape == (3, 8, 8) and set(target["mask"].unique().tolist()) == {2}


def test_stage2_on_proposals_is_declared_with_its_folder():
    from visiontasks.registry import get_model

    stages = get_model("fcn_small", num_classes=3, stages={"stage1": {"max_iters": 2},
                                                            "stage2": {"windows": "proposals"}}).training_stages()
    assert [s.name for s in stages] == ["stage1_object_crops", "stage2_proposal_windows"]
    assert stages[1].folders == ("stage2_windows",) and not stages[1].skip_when_done
    assert stages[1].settings["min_iou"] == 0.5 and stages[1].settings["resize"] == 250


@pytest.mark.slow  # three real training processes with selective search: ~1-2 min on 2 shared cores
def test_stage2_on_proposal_windows_resumes_after_a_kill(tiny, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    extra = ("model.stages.stage2.windows=proposals", "model.stages.stage2.resize=96",
             "model.stages.stage2.crop_size=80", "model.stages.stage2.min_iou=0.3", "train.checkpoint_every=1")
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    done = subprocess.run(_args(tiny, whole, *extra), env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    state = json.loads((whole / "stages.json").read_text())
    assert state["stage2_proposal_windows"]["status"] == "done" and state["stage2_proposal_windows"]["summary"]["windows"] > 0
    assert sorted(p.name for p in (whole / "stage2_windows").iterdir()) == ["0.npy", "1.npy", "2.npy", "3.npy"]
    proc = subprocess.Popen(_args(tiny, cut, *extra), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _kill_when(proc, cut / "checkpoint_last.pt", 3)
    res = subprocess.run(_args(tiny, cut, "--resume", *extra), env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr
    _same_weights(whole / "checkpoint_last.pt", cut / "checkpoint_last.pt")
    assert _rows(whole / "log.csv") == _rows(cut / "log.csv")
