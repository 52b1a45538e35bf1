"""Detection through the task-driven fit loop: config errors, the loss over the spec's anchors, a run on
composite scenes that checkpoints, logs COCO mAP, resumes bitwise, evaluates and exports from the command line."""

import json
import math

import pytest
import torch

from edgenas.cli import main
from edgenas.config import load_config
from edgenas.det import SSDLoss, detector_anchors
from edgenas.spec import Detector, SpecError
from edgenas.tasks import DetectionTask, get_task
from edgenas.tasks.detection import DetectionLoss
from edgenas.train.checkpoint import load_checkpoint, load_trained
from edgenas.train.loop import fit

# SpaghettiNet-EdgeTPU-S at 64 px (~42 MMACs an image): 2 steps of 8 scenes an epoch, 8 validation scenes
DET = ["task=detection", "model.name=spaghettinet_edgetpu_s", "model.input_size=64", "data.train_subset=16",
       "data.val_subset=8", "train.epochs=2", "train.batch_size=8", "train.threads=1", "train.lr=0.02",
       "train.warmup_epochs=0.5", "train.ema_decay=0.9", "train.log_every=1000"]


@pytest.mark.parametrize("overrides,message", [
    (["data.dataset=camvid"], "data.dataset: 'camvid' is not a detection dataset (use one of composite, coco"),
    (["data.dataset=coco"], "data.data_dir: coco needs the dataset's folder"),
    (["data.eval_size=64"], "data.eval_size: is for segmentation"),
    (["model.name=autoseg_edgetpu_xs"], None),
])
def test_bad_detection_settings_are_one_line(overrides, message):
    if message is None:  # valid as a config; the task names the mismatch when it builds the spec
        cfg = load_config(overrides=DET + overrides)
        with pytest.raises(SpecError, match="model.name: autoseg_edgetpu_xs is a segmentation network; set task: "
                                            r"segmentation to train it \(this run's task is detection\)"):
            get_task(cfg).spec(cfg)
        return
    with pytest.raises(SpecError) as err:
        load_config(overrides=DET + overrides)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


@pytest.mark.parametrize("task", ["classification", "segmentation"])
def test_a_detector_is_refused_by_the_other_tasks_with_one_line(task):
    """Bug (b): classification refused only a ``Network``, and then failed on a detector with an unrelated error."""
    cfg = load_config(overrides=[f"task={task}", "model.name=spaghettinet_edgetpu_s"]
                      + (["data.dataset=composite"] if task == "segmentation" else []))
    with pytest.raises(SpecError, match=r"^model.name: spaghettinet_edgetpu_s is a detection network; set task: "
                                        f"detection to train it \\(this run's task is {task}\\)$"):
        get_task(cfg).spec(cfg)


def test_pretrained_tflite_weights_on_a_detector_are_refused_with_one_line():
    """``load_pretrained`` read ``model.arch``, which a ``DetectorModel`` does not have (an AttributeError)."""
    cfg = load_config(overrides=DET + ["model.pretrained=/x/google.tflite"])
    with pytest.raises(SpecError, match=r"^model.pretrained: /x/google.tflite: TFLite weights import into "
                                        r"autoseg_edgetpu_xs, deeplab_mobilenet_edgetpu_slim, "
                                        r"mobilenet_edgetpu_100, not into a detector"):
        get_task(cfg).spec(cfg)


def test_the_spec_takes_classes_from_the_data_and_the_config_file_loads():
    cfg = load_config(overrides=DET + ["train.bn_momentum=0.2"])
    spec = get_task(cfg).spec(cfg)
    assert isinstance(spec, Detector) and (spec.num_classes, spec.input_size, spec.norm.momentum) == (10, 64, 0.2)
    coco = load_config(overrides=DET + ["data.dataset=coco", "data.data_dir=/x"])
    assert get_task(coco).spec(coco).num_classes == 90
    smoke = load_config("configs/det_composite.yaml")
    assert (smoke.task, smoke.data.dataset, smoke.model.input_size) == ("detection", "composite", 128)


def test_the_task_loss_is_ssd_loss_over_the_specs_anchors():
    cfg = load_config(overrides=DET)
    spec = get_task(cfg).spec(cfg)
    loss = get_task(cfg).loss(cfg)
    assert isinstance(loss, DetectionLoss) and torch.equal(loss.anchors, detector_anchors(spec))
    n = len(loss.anchors)
    cls, box = torch.randn(2, n, 11), torch.randn(2, n, 4)
    targets = [{"boxes": torch.tensor([[0.1, 0.1, 0.5, 0.4]]), "labels": torch.tensor([3])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}]
    expect = SSDLoss(10)(cls, box, loss.anchors, [(t["boxes"], t["labels"]) for t in targets])["total"]
    assert loss((cls, box), targets).item() == pytest.approx(expect.item())


@pytest.fixture(scope="module")
def det_runs(tmp_path_factory):
    """An uninterrupted 2-epoch run, and one stopped after epoch 1 then resumed."""
    root = tmp_path_factory.mktemp("det")
    full = fit(load_config(overrides=DET + [f"out={root / 'full'}"]), DetectionTask())[-1]
    half = load_config(overrides=DET + [f"out={root / 'half'}"])
    fit(half, DetectionTask(), stop_after=1)
    fit(half, DetectionTask(), resume=True)
    return root, full


def test_a_detection_run_logs_map_and_resumes_bitwise(det_runs):
    root, full = det_runs
    assert full["epoch"] == 1 and full["val_quality"] == full["val_map"]
    assert 0 <= full["val_map"] <= 100 and full["val_images"] == 8 and math.isfinite(full["train_loss"])
    assert "ema_val_map" in full and "val_ap50" in full and "val_miou" not in full
    a, b = load_checkpoint(root / "full" / "checkpoint.pt"), load_checkpoint(root / "half" / "checkpoint.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert json.loads(b["history"])[-1]["val_map"] == full["val_map"]
    assert isinstance(load_trained(root / "half" / "checkpoint.pt")[1], Detector)


def test_eval_and_onnx_export_from_the_command_line(det_runs, capsys):
    root, full = det_runs
    assert main(["eval", str(root / "full" / "checkpoint.pt")]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"8 images: mAP {full['val_map']:.2f}%, AP50 ") and "AP %" in out and "Sneaker" in out
    assert main(["export", str(root / "full" / "checkpoint.pt"), "--format", "onnx", "--check-images", "4",
                 "--calibration-images", "4"]) == 0
    out = capsys.readouterr().out
    assert "checkpoint.onnx" in out and "NMS in graph, 100.00% of PyTorch's detections reproduced on 4" in out
