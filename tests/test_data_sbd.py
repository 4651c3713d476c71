"""SBD reader (cls/inst .mat through scipy.io), FCN's seg11valid and the train_aug union, on a small
SBD-layout folder and a VOC-layout folder that the tests write themselves."""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from visiontasks.config import load_config
from visiontasks.data import build_dataset, dataset_classes, save_label_png
from visiontasks.data.sbd import SBDSegmentation, load_sbd_mat
from visiontasks.data.sbd_splits import read_id_list, seg11valid_ids, train_aug_ids
from visiontasks.errors import InputError
from visiontasks.tasks import VOC_CLASSES

REPO = Path(__file__).resolve().parents[1]
H, W = 12, 16


def _label_map(seed: int, top: int = 20) -> np.ndarray:
    """A (H, W) uint8 map: background with two rectangles of classes 1 + seed % top and 20."""
    m = np.zeros((H, W), np.uint8)
    m[2:6, 3:9] = 1 + seed % top
    m[7:11, 10:15] = 20
    return m


def _jpeg(path: Path, shape: tuple[int, int] = (H, W)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*shape, 3), 128, np.uint8)).save(path, quality=95)


def _write_sbd_mats(root: Path, image_id: str, cls: np.ndarray, inst: np.ndarray | None = None) -> None:
    (root / "cls").mkdir(parents=True, exist_ok=True)
    (root / "inst").mkdir(parents=True, exist_ok=True)
    # the release's layout: a 1x1 struct with Segmentation (and other fields the readers ignore)
    present = np.unique(cls[(cls > 0) & (cls < 255)]).astype(np.uint8)
    scipy.io.savemat(root / "cls" / f"{image_id}.mat",
                     {"GTcls": {"Segmentation": cls, "CategoriesPresent": present}}, do_compression=True)
    if inst is None:  # one instance per rectangle
        inst = np.zeros_like(cls)
        inst[cls == cls[3, 4]] = 1
        inst[cls == 20] = 2
    scipy.io.savemat(root / "inst" / f"{image_id}.mat", {"GTinst": {"Segmentation": inst}}, do_compression=True)


SBD_TRAIN = ["2008_000001", "2008_000002", "2008_000003"]
SBD_VAL = ["2008_000004", "2008_000001"]  # 000001 also in train: the union counts it once
VOC_TRAIN = ["2007_000001", "2008_000002"]
VOC_VAL = ["2007_000002", "2008_000003", "2008_000005", "2008_000004"]  # 000003: SBD train; 000004: SBD val


@pytest.fixture()
def folders(tmp_path: Path) -> tuple[Path, Path]:
    sbd, voc = tmp_path / "benchmark_RELEASE" / "dataset", tmp_path / "VOC"
    for k, image_id in enumerate(sorted(set(SBD_TRAIN + SBD_VAL))):
        _jpeg(sbd / "img" / f"{image_id}.jpg")
        _write_sbd_mats(sbd, image_id, _label_map(k))
    (sbd / "train.txt").write_text("\n".join(SBD_TRAIN) + "\n")
    (sbd / "val.txt").write_text("\n".join(SBD_VAL) + "\n")
    sets = voc / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    for k, image_id in enumerate(sorted(set(VOC_TRAIN + VOC_VAL))):
        _jpeg(voc / "JPEGImages" / f"{image_id}.jpg")
        mask = _label_map(k + 7)
        mask[0, :] = 255  # VOC's void border
        save_label_png(voc / "SegmentationClass" / f"{image_id}.png", mask)
    (sets / "train.txt").write_text("\n".join(VOC_TRAIN) + "\n")
    (sets / "val.txt").write_text("\n".join(VOC_VAL) + "\n")
    return sbd, voc


def test_split_construction_on_hand_built_lists():
    assert seg11valid_ids(["a", "b", "c", "d", "b"], ["b", "x"]) == ["a", "c", "d"]
    assert train_aug_ids(["s1", "s2", "v1"], ["s3", "s1"], ["t1", "s2", "t2"], ["v1", "t2", "z"]) == \
        ["s1", "s2", "s3", "t1"]
    assert train_aug_ids([], [], ["t"], []) == ["t"] and seg11valid_ids([], ["x"]) == []


def test_a_count_off_the_reference_warns_only_for_the_full_lists():
    from visiontasks.data.sbd_splits import SEG11VALID_SIZE, warn_size

    voc_val = [f"v{k}" for k in range(1111)]
    sbd_train = voc_val[:1111 - SEG11VALID_SIZE] + [f"s{k}" for k in range(8498 - 375)]  # shares 375 images
    ids = seg11valid_ids(voc_val, sbd_train)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_size("seg11valid", len(ids), SEG11VALID_SIZE, {"voc11_val": 1111, "sbd_train": 8498})  # 736: silent
        warn_size("seg11valid", 3, SEG11VALID_SIZE, {"voc11_val": 4, "sbd_train": 2})  # not the full lists
    with pytest.warns(UserWarning, match="737 images from the full lists, the reference has 736"):
        warn_size("seg11valid", len(ids) + 1, SEG11VALID_SIZE, {"voc11_val": 1111, "sbd_train": 8498})


def test_sbd_train_reads_cls_mats(folders):
    sbd, _ = folders
    ds = SBDSegmentation(sbd, "train")
    assert ds.ids == SBD_TRAIN and ds.classes == VOC_CLASSES and len(ds) == 3
    order = sorted(set(SBD_TRAIN + SBD_VAL))
    for k, image_id in enumerate(SBD_TRAIN):
        image, target = ds[k]
        want = _label_map(order.index(image_id))
        assert image.shape == (3, H, W) and image.dtype == torch.float32
        assert torch.equal(target["mask"], torch.from_numpy(want.astype(np.int64)))
        assert target["image_id"] == image_id and target["orig_size"].tolist() == [H, W]
        assert ds.mask_path(k) == sbd / "cls" / f"{image_id}.mat"
    assert SBDSegmentation(sbd, "val").ids == SBD_VAL


def test_inst_mats_and_instance_labels(folders):
    sbd, _ = folders
    ds = SBDSegmentation(sbd, "train")
    inst = load_sbd_mat(sbd / "inst" / "2008_000002.mat", "inst")
    assert inst.shape == (H, W) and sorted(np.unique(inst).tolist()) == [0, 1, 2]
    got = ds.get_instances(1)  # 2008_000002: class 2 rectangle is instance 1, class 20 is instance 2
    assert got["instance_ids"].tolist() == [1, 2] and got["labels"].tolist() == [2, 20]
    assert torch.equal(got["instance_mask"], torch.from_numpy(inst))


def test_seg11valid_computed_from_the_lists_on_disk(folders):
    sbd, voc = folders
    ds = SBDSegmentation(sbd, "seg11valid", voc_root=voc)
    # VOC val minus SBD train: 2008_000003 dropped; 2008_000004 (SBD val) stays, as in the reference
    assert ds.ids == ["2007_000002", "2008_000005", "2008_000004"]
    assert ds.split_file == voc / "ImageSets" / "Segmentation" / "val.txt"
    for k in range(len(ds)):  # images and masks from VOC, void border kept as 255
        assert ds.image_path(k).parent == voc / "JPEGImages" and ds.mask_path(k).suffix == ".png"
        mask = ds.get_annotation(k)["mask"]
        assert (mask[0] == 255).all() and mask[7:11, 10:15].eq(20).all()
    with pytest.raises(ValueError, match="voc_root"):
        SBDSegmentation(sbd, "seg11valid")


def test_seg11valid_list_file_is_read_and_checked_against_sbd_train(folders):
    sbd, voc = folders
    listed = voc / "ImageSets" / "Segmentation" / "seg11valid.txt"
    listed.write_text("2008_000005\n2007_000002\n")
    assert SBDSegmentation(sbd, "seg11valid", voc_root=voc).ids == ["2008_000005", "2007_000002"]
    listed.write_text("2008_000005\n2008_000003\n")  # 2008_000003 is in SBD train
    with pytest.raises(InputError, match="seg11valid.txt: 1 of its images are in SBD") as err:
        SBDSegmentation(sbd, "seg11valid", voc_root=voc)
    assert "\n" not in str(err.value)


def test_train_aug_union_minus_voc_val(folders):
    sbd, voc = folders
    ds = SBDSegmentation(sbd, "train_aug", voc_root=voc)
    # (SBD train ∪ SBD val ∪ VOC train) − VOC val: 2008_000003 and 2008_000004 are VOC val images
    assert ds.ids == ["2008_000001", "2008_000002", "2007_000001"]
    # VOC train images keep VOC's PNG (2008_000002 is in SBD train too), the SBD-only one its .mat
    assert [p.suffix for p in map(ds.mask_path, range(3))] == [".mat", ".png", ".png"]
    assert ds.image_path(0) == sbd / "img" / "2008_000001.jpg"
    assert ds.image_path(1) == voc / "JPEGImages" / "2008_000002.jpg"
    assert (ds.get_annotation(1)["mask"][0] == 255).all() and (ds.get_annotation(0)["mask"] != 255).all()
    with pytest.raises(ValueError, match="from VOC"):
        ds.get_instances(2)
    val = SBDSegmentation(sbd, "voc:val", voc_root=voc)  # what train_aug is evaluated on
    assert val.ids == VOC_VAL and not set(val.ids) & set(ds.ids)
    assert all(val.mask_path(k).suffix == ".png" for k in range(len(val)))


def test_build_dataset_selects_sbd(folders):
    sbd, voc = folders
    cfg = {"dataset": "sbd", "root": str(sbd), "voc_root": str(voc), "hflip_prob": 1.0}
    assert dataset_classes(cfg) == VOC_CLASSES
    train = build_dataset(cfg, "train", train=True, task="segmentation")
    image, target = train[0]
    want = torch.from_numpy(_label_map(0).astype(np.int64)).flip(-1)  # hflip_prob 1: flipped with its image
    assert isinstance(train, SBDSegmentation) and torch.equal(target["mask"], want)
    assert len(build_dataset(cfg, "seg11valid", train=False, task="segmentation")) == 3
    with pytest.raises(ValueError, match="task 'segmentation' only"):
        build_dataset(cfg, "train", train=False, task="detection")
    with pytest.raises(ValueError, match="data.root"):
        build_dataset({"dataset": "sbd"}, "train", train=False, task="segmentation")


def _one_line(err: pytest.ExceptionInfo, path: Path) -> str:
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path}: "), message
    return message


def test_truncated_and_malformed_mats_name_the_file(folders):
    sbd, _ = folders
    ds = SBDSegmentation(sbd, "train")
    path = sbd / "cls" / "2008_000002.mat"
    data = path.read_bytes()
    for cut in (10, len(data) // 2, len(data) - 4):
        path.write_bytes(data[:cut])
        with pytest.raises(InputError) as err:
            ds[1]
        assert "truncated or corrupt" in _one_line(err, path) or "no struct GTcls" in str(err.value)
    path.write_bytes(b"not a MATLAB file at all")
    with pytest.raises(InputError) as err:
        ds.get_annotation(1)
    _one_line(err, path)
    scipy.io.savemat(path, {"GTinst": {"Segmentation": _label_map(1)}})  # the wrong struct
    with pytest.raises(InputError, match="no struct GTcls with a Segmentation field") as err:
        ds.get_annotation(1)
    _one_line(err, path)
    scipy.io.savemat(path, {"GTcls": {"Segmentation": np.zeros((2, 3, 4), np.uint8)}})
    with pytest.raises(InputError, match="not a 2-D") as err:
        ds.get_annotation(1)
    _one_line(err, path)
    scipy.io.savemat(path, {"GTcls": {"Segmentation": np.full((H, W), 0.5)}})
    with pytest.raises(InputError, match="not integer labels"):
        ds.get_annotation(1)


@pytest.mark.parametrize("value", [21, 254])
def test_label_outside_the_classes_names_the_file(folders, value):
    sbd, _ = folders
    path = sbd / "cls" / "2008_000003.mat"
    bad = _label_map(2)
    bad[5, 5] = value
    scipy.io.savemat(path, {"GTcls": {"Segmentation": bad}})
    ds = SBDSegmentation(sbd, "train")
    with pytest.raises(InputError, match=f"holds label {value}, outside 0..20") as err:
        ds[2]
    _one_line(err, path)
    bad[5, 5] = 255  # ignore, as in VOC
    scipy.io.savemat(path, {"GTcls": {"Segmentation": bad}})
    assert ds.get_annotation(2)["mask"][5, 5] == 255


def test_mask_of_another_size_names_the_file(folders):
    sbd, _ = folders
    path = sbd / "cls" / "2008_000001.mat"
    scipy.io.savemat(path, {"GTcls": {"Segmentation": np.zeros((H + 1, W), np.uint8)}})
    with pytest.raises(InputError, match=r"label map is \(13, 16\)") as err:
        SBDSegmentation(sbd, "train")[0]
    _one_line(err, path)


@pytest.mark.parametrize("missing", ["img/2008_000002.jpg", "cls/2008_000002.mat"])
def test_listed_id_without_its_file_names_the_file(folders, missing):
    sbd, _ = folders
    (sbd / missing).unlink()
    with pytest.raises(InputError, match="has no such file") as err:
        SBDSegmentation(sbd, "train")
    _one_line(err, sbd / missing)


def test_missing_lists_and_voc_files_name_the_file(folders):
    sbd, voc = folders
    with pytest.raises(InputError, match="split list not found") as err:
        SBDSegmentation(sbd, "trainval")
    _one_line(err, sbd / "trainval.txt")
    (voc / "SegmentationClass" / "2008_000005.png").unlink()
    with pytest.raises(InputError, match="has no such file") as err:
        SBDSegmentation(sbd, "seg11valid", voc_root=voc)
    _one_line(err, voc / "SegmentationClass" / "2008_000005.png")
    assert read_id_list(sbd / "val.txt") == SBD_VAL


def test_sbd_configs_load_and_name_the_papers_splits():
    for stage in ("fcn32s", "fcn16s", "fcn8s"):
        cfg = load_config(REPO / "configs" / "segmentation" / f"{stage}_vgg16_sbd.yaml")
        voc = load_config(REPO / "configs" / "segmentation" / f"{stage}_vgg16_voc.yaml")
        data = cfg["data"]
        assert (data["dataset"], data["train_split"], data["test_split"]) == ("sbd", "train", "seg11valid")
        assert cfg["model"].get("learn_upsampling", False) is False  # the released code's fixed ×2 layers
        assert cfg["train"] == voc["train"]  # the reference solver, as the VOC configs express it
    aug = load_config(REPO / "configs" / "segmentation" / "dilated_frontend_vgg16_trainaug.yaml")["data"]
    assert (aug["dataset"], aug["train_split"], aug["test_split"]) == ("sbd", "train_aug", "voc:val")


def test_train_seg_runs_on_the_sbd_folder(folders, tmp_path, capsys):
    sys.path.insert(0, str(REPO / "tools"))
    import train_seg  # noqa: E402
    from _common import run_cli  # noqa: E402

    sbd, voc = folders
    config = tmp_path / "sbd_small.yaml"  # the FCN-8s config's data section, a small model
    config.write_text(f"""task: segmentation
model: {{name: fcn_small, num_classes: 21, width: 8}}
data: {{dataset: sbd, root: {sbd}, voc_root: {voc}, train_split: train, test_split: seg11valid,
       hflip_prob: 0.0, num_workers: 0}}
train: {{max_iters: 2, batch_size: 2, lr: 0.01, checkpoint_every: 2, log_every: 1}}
""")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rc = run_cli(train_seg.main, ["--config", str(config), "--out", str(tmp_path / "r"), "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    assert not [w for w in caught if "the reference has" in str(w.message)]  # not the full lists: no size warning
    assert (tmp_path / "r" / "metrics.json").is_file()
