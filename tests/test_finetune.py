"""Fine-tuning from pretrained weights (issue 28): class maps, ``model.pretrained`` for Google's TFLite and timm's
backbone, the recipe's settings (backbone learning rate, frozen BatchNorm, median-frequency weights), split
selection and the data mistakes that must read as one line."""

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from edgenas.config import load_config
from edgenas.data.segmentation import CAMVID_CLASSES, camvid, class_pixels, mask_folder
from edgenas.errors import DataError, EdgenasError
from edgenas.models import get_arch
from edgenas.models.class_map import UNMAPPED, ClassMapError, load_class_map, merged_logits
from edgenas.models.pretrained import PretrainedError, load_pretrained
from edgenas.models.tflite_check import load_photo
from edgenas.models.tflite_import import from_tflite
from edgenas.models.timm_weights import WeightLoadError, from_timm
from edgenas.nn import build_model
from edgenas.tasks import get_task
from edgenas.tasks.segmentation import SegmentationLoss, median_frequency_weights
from edgenas.train.loop import make_optimizer

from conftest import FIXTURES, need_shared
from test_input_errors import cli, one_line_error

ROOT = FIXTURES.parents[1]
AUTOSEG = FIXTURES / "google" / "autoseg_edgetpu_xs_fused_argmax.tflite"
TIMM = FIXTURES / "timm_mobilenet_edgetpu_v2_m.safetensors"
ADE_MAP = ROOT / "configs" / "class_maps" / "camvid_from_ade20k32.yaml"
CITY_MAP = ROOT / "configs" / "class_maps" / "camvid_from_cityscapes.yaml"


def test_shipped_maps_cover_camvid():
    ade = load_class_map(ADE_MAP, CAMVID_CLASSES)
    assert ade.mapped == ["Sky", "Building", "Road", "Pavement", "Tree", "Car", "Pedestrian"]
    city = load_class_map(CITY_MAP, CAMVID_CLASSES)
    assert city.mapped == list(CAMVID_CLASSES)
    assert city.lookup().tolist().count(-1) == 19 - 17  # terrain and train mean no CamVid class


@pytest.mark.parametrize("body, message", [
    ("source: ade20k-32\nclasses: {Sky: [sky]}", "no entry for Building"),
    ("source: ade20k-32\nclasses: {Sky: [skies], Building: [], Pole: [], Road: [], Pavement: [], Tree: [], "
     "SignSymbol: [], Fence: [], Car: [], Pedestrian: [], Bicyclist: []}", "'skies' is not a class of the"),
    ("source: ade20k-32\nclasses: {Sky: [sky], Building: [sky], Pole: [], Road: [], Pavement: [], Tree: [], "
     "SignSymbol: [], Fence: [], Car: [], Pedestrian: [], Bicyclist: [], Boat: []}", "Boat is not a class"),
    ("source: coco\nclasses: {}", "source: 'coco' is not one of"),
    ("classes: {Sky: [sky]}", "give one of source"),
    ("- just a list", "a class map is a mapping"),
])
def test_bad_class_maps_name_the_problem(tmp_path, body, message):
    path = tmp_path / "map.yaml"
    path.write_text(body)
    with pytest.raises(ClassMapError, match=message):
        load_class_map(path, CAMVID_CLASSES)


def test_a_source_feeds_one_class(tmp_path):
    path = tmp_path / "map.yaml"
    path.write_text("source_classes: [a, b]\nclasses: {x: [a], y: [a, b]}")
    with pytest.raises(ClassMapError, match="'a' already feeds x"):
        load_class_map(path)


@pytest.fixture(scope="module")
def camvid_photo():
    files = sorted(need_shared("data/camvid/val", "CamVid photos").glob("*.png"))
    return torch.from_numpy((load_photo(files[40], 256).astype(np.float32) - 127.0) / 127.5).permute(2, 0, 1)[None]


@torch.no_grad()
def test_mapped_head_predicts_at_step_0_what_the_pretrained_model_predicts(camvid_photo):
    """Autoseg-XS from Google's ADE20K-32 file, its head mapped to CamVid's 11 classes: at step 0 the logits are
    the pretrained ones through the map, so wherever the pretrained winner is a class's primary source the new
    model predicts that class; against the pretrained argmax mapped class by class (every source) it agrees on
    nearly every pixel the map covers."""
    source = from_tflite("autoseg_edgetpu_xs", AUTOSEG)
    model = build_model(get_arch("autoseg_edgetpu_xs", 11).replace(padding="tf")).eval()
    line = load_pretrained(model, AUTOSEG, ADE_MAP, CAMVID_CLASSES)
    assert "head rows from 7 of 11 classes" in line and "fresh: nothing" in line, line
    cmap = load_class_map(ADE_MAP, CAMVID_CLASSES)
    z_src, z_new = source(camvid_photo), model(camvid_photo)
    torch.testing.assert_close(z_new, merged_logits(z_src, cmap), atol=1e-4, rtol=1e-4)
    winner = z_src.argmax(1)
    primary = torch.tensor([src[0] for src in cmap.sources if src])
    at_primary = torch.isin(winner, primary)
    mapped = cmap.lookup()[winner]
    assert at_primary.float().mean() > 0.5  # the photo is mostly road, sky, buildings and trees
    assert torch.equal(z_new.argmax(1)[at_primary], mapped[at_primary])
    covered = mapped >= 0
    assert (z_new.argmax(1)[covered] == mapped[covered]).float().mean() >= 0.99
    assert float(z_new[:, 2].max()) == pytest.approx(UNMAPPED)  # Pole: zero row, the unmapped bias


def test_timm_backbone_lands_in_a_deeplab():
    """DeepLabv3+ on mobilenet_edgetpu_v2_m from timm's ImageNet state dict: the network's backbone becomes
    timm's variant of it, and its features equal timm's own model's on the same input."""
    cfg = load_config(base={"task": "segmentation", "model": {
        "name": "deeplabv3plus_mobilenet_edgetpu_v2_m", "pretrained": str(TIMM), "num_classes": 11,
        "input_size": 64}})
    spec = get_task(cfg).spec(cfg)
    assert spec.backbone.name == "mobilenet_edgetpu_v2_m.timm" and spec.padding == "symmetric"
    model = build_model(spec).eval()
    line = load_pretrained(model, TIMM)
    n_backbone = sum(1 for k in model.state_dict() if k.startswith("backbone."))
    assert f" {n_backbone} of {len(model.state_dict())} tensors" in line and "timm's backbone" in line, line
    assert "fresh: " in line and "aspp" in line and "of its tensors unused" in line, line
    timm = from_timm("mobilenet_edgetpu_v2_m", TIMM).eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for ours, theirs in zip(model.backbone(x), timm.backbone(x)):
            torch.testing.assert_close(ours, theirs)


def test_weights_that_fit_nothing_are_an_error(tmp_path):
    from safetensors.torch import save_file

    junk = tmp_path / "junk.safetensors"
    save_file({"encoder.weight": torch.zeros(3)}, str(junk))
    model = build_model(get_arch("deeplabv3plus_mobilenet_edgetpu_v2_m", 11))
    with pytest.raises(WeightLoadError, match="no key of it is a timm MobileNetEdgeTPU backbone key"):
        load_pretrained(model, junk)
    with pytest.raises(EdgenasError, match="does not fit our"):  # another network's TFLite
        load_pretrained(build_model(get_arch("mobilenet_edgetpu_100")), AUTOSEG)
    assert issubclass(PretrainedError, EdgenasError)


def test_timm_weights_on_a_network_without_a_timm_backbone_is_one_line(capsys, tmp_path):
    code, err = cli(capsys, "train", "--model", "autoseg_edgetpu_xs", "--out", str(tmp_path / "run"), "--set",
                    "task=segmentation", "--set", f"model.pretrained={TIMM}", "--set", "data.train_subset=2")
    assert "model.pretrained:" in one_line_error(code, err) and "autoseg_edgetpu_backbone_xs" in err


def test_median_frequency_weights():
    # class 0: 90 px over 100 px of the one image holding it; class 1: 10 of 100 and 40 of 50 (two images)
    pixels, image_pixels = np.array([90, 50, 0]), np.array([100, 150, 0])
    w = median_frequency_weights((pixels, image_pixels))
    f0, f1 = 0.9, 50 / 150
    median = np.median([f0, f1])
    assert w.tolist() == pytest.approx([median / f0, median / f1, 0.0])
    loss = SegmentationLoss(weight=w)
    logits = torch.zeros(1, 3, 1, 2)
    target = torch.tensor([[[0, 1]]])
    # equal logits: every pixel's loss is log 3, and the weighted mean of equal losses is that loss
    assert float(loss(logits, target)) == pytest.approx(np.log(3))


def test_class_pixels_counts_labels(tmp_path):
    root = _camvid(tmp_path, {"train": 2})
    data = camvid(root, "train")
    pixels, image_pixels = class_pixels(data)
    # two 4 x 6 images, each half class 0 (top rows) and half class 1
    assert pixels[:3].tolist() == [24, 24, 0] and image_pixels[:3].tolist() == [48, 48, 0]


def _camvid(tmp_path, splits: dict[str, int]):
    root = tmp_path / "camvid"
    (root / "img").mkdir(parents=True)
    (root / "lbl").mkdir()
    for split, n in splits.items():
        lines = []
        for i in range(n):
            Image.fromarray(np.full((4, 6, 3), 40 * i, np.uint8)).save(root / "img" / f"{split}{i}.png")
            label = np.zeros((4, 6), np.uint8)
            label[2:] = 1
            Image.fromarray(label).save(root / "lbl" / f"{split}{i}.png")
            lines.append(f"img/{split}{i}.png lbl/{split}{i}.png")
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def test_any_listed_split_is_read(tmp_path):
    root = _camvid(tmp_path, {"train": 2, "val": 1, "test": 3})
    assert len(camvid(root, "test")) == 3
    with pytest.raises(DataError, match=r"no such split list \('holdout'\); this folder lists test, train, val"):
        camvid(root, "holdout")
    cfg = load_config(base={"task": "segmentation", "model": {"name": "autoseg_edgetpu_xs", "input_size": 32},
                            "data": {"dataset": "camvid", "data_dir": str(root), "split": "test"}})
    task = get_task(cfg)
    spec = task.spec(cfg)
    train, val = task.datasets(cfg, spec)
    assert (len(train), len(val)) == (2, 3)


def test_split_is_for_camvid_layouts():
    with pytest.raises(EdgenasError, match="data.split: names a split list of a CamVid-layout folder"):
        load_config(base={"task": "segmentation", "model": {"name": "autoseg_edgetpu_xs"},
                          "data": {"split": "test"}})


def test_backbone_learns_at_a_fraction_of_the_head(tmp_path):
    cfg = load_config(base={"task": "segmentation", "model": {"name": "autoseg_edgetpu_xs"},
                            "train": {"lr": 0.01, "backbone_lr_scale": 0.1}})
    model = build_model(get_arch("autoseg_edgetpu_xs"))
    opt = make_optimizer(model, cfg)
    by_lr = {}
    for group in opt.param_groups:
        lr = round(group["lr"], 9)
        by_lr[lr] = by_lr.get(lr, 0) + sum(p.numel() for p in group["params"])
    backbone = sum(p.numel() for n, p in model.named_parameters() if n.startswith("backbone."))
    assert by_lr == {0.001: backbone, 0.01: sum(p.numel() for p in model.parameters()) - backbone}
    plain = make_optimizer(model, load_config(base={"model": {"name": "mobilenet_v2"}}))
    assert len(plain.param_groups) == 2  # without the split, the groups of before (resumable checkpoints)


def test_mask_folder_mistakes_are_one_line(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(images / "a.png")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(masks / "a.png")
    with pytest.raises(DataError, match="model.num_classes: 256: a mask folder's labels are 8-bit"):
        mask_folder(images, masks, 256)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(images / "b.png")
    os.symlink(tmp_path / "gone.png", masks / "b.png")
    with pytest.raises(DataError, match="b.png: a dangling or looping symlink"):
        mask_folder(images, masks, 2)
    os.remove(masks / "b.png")
    os.symlink(masks / "b.png", masks / "b.png")  # a link to itself: a loop
    with pytest.raises(DataError, match="dangling or looping symlink"):
        mask_folder(images, masks, 2)


def test_frozen_batchnorm_keeps_its_statistics(tmp_path):
    """``train.freeze_bn``: a fine-tune's BatchNorm keeps the statistics it started with (Google's files fold
    them into the convs) while its affine parameters and the convs learn."""
    from edgenas.train.checkpoint import load_trained
    from edgenas.train.loop import fit

    base = ["task=segmentation", "model.name=autoseg_edgetpu_xs", "model.input_size=32", "data.train_subset=8",
            "data.val_subset=2", "train.epochs=1", "train.batch_size=4", "train.threads=1", "train.lr=0.01",
            f"model.pretrained={AUTOSEG}"]
    states = {}
    for frozen in (True, False):
        cfg = load_config(overrides=[*base, f"train.freeze_bn={frozen}", f"out={tmp_path / str(frozen)}"])
        fit(cfg, get_task(cfg))
        states[frozen] = load_trained(tmp_path / str(frozen) / "checkpoint.pt")[2].state_dict()
    start_model = build_model(get_task(cfg).spec(cfg))
    load_pretrained(start_model, AUTOSEG)
    start = start_model.state_dict()
    stats = [k for k in start if k.endswith(("running_mean", "running_var"))]
    assert all(torch.equal(states[True][k], start[k]) for k in stats)
    assert not all(torch.equal(states[False][k], start[k]) for k in stats)
    assert not torch.equal(states[True]["backbone.stem.bn.weight"], start["backbone.stem.bn.weight"])


def test_zero_shot_eval_and_eval_through_a_tail(capsys, tmp_path):
    """``edgenas eval --pretrained``: Google's Autoseg-XS scored on CamVid through the class map with no
    training; ``--tail`` scores the class map a serving tail gives: the exact tail at the evaluated size is the
    meter's own resize-then-argmax, so it scores the same."""
    camvid_dir = need_shared("data/camvid", "CamVid")
    args = ["eval", "--pretrained", str(AUTOSEG), "--class-map", str(ADE_MAP), "--config",
            str(ROOT / "configs" / "seg_camvid_finetune.yaml"), "--set", f"data.data_dir={camvid_dir}",
            "--set", "data.val_subset=2", "--set", "data.eval_size=96", "--set", "train.batch_size=2", "--json"]
    scores = []
    for tail in ([], ["--tail", "resize96,argmax"], ["--tail", "resize48,argmax,resize96"]):
        code, out = _run(capsys, *args, *tail)
        assert code == 0
        scores.append(json.loads(out))
    plain, exact, fused = scores
    assert plain["iou"]["Road"] > 50 and plain["iou"]["Pole"] in (0.0, None)
    assert exact["confusion"] == plain["confusion"] and exact["loss"] is None
    assert fused["confusion"] != plain["confusion"] and abs(fused["miou"] - plain["miou"]) < 5


def test_tail_is_for_segmentation(capsys):
    code, err = cli(capsys, "eval", "--model", "mobilenet_edgetpu_v2_m", "--weights", str(TIMM), "--tail",
                    "resize512,argmax")
    assert one_line_error(code, err) == ("--tail: mobilenet_edgetpu_v2_m.timm is a classification model; a "
                                         "serving tail ends a segmentation network")


def _run(capsys, *argv) -> tuple[int, str]:
    from edgenas.cli import main

    code = main(list(argv))
    return code, capsys.readouterr().out
