"""Export: ONNX, int8 ONNX and LiteRT, each checked against the PyTorch model on real test images."""

import json

import pytest
import torch

from edgenas.cli import main
from edgenas.config import load_config
from edgenas.export import ExportError, export
from edgenas.export.api import FP32, INT8, Tolerance, check_parity
from edgenas.export.onnx import to_onnx
from edgenas.models import get_arch
from edgenas.nn import SplitGroupConv2d, build_model
from edgenas.tasks import ClassificationTask, get_task
from edgenas.tasks.parity import parity_data
from edgenas.train.loop import fit

from test_train import SMALL


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model trained long enough (140 steps) for settled BatchNorm statistics: int8 ranges calibrated on an
    unsettled network are dominated by outliers, which says nothing about the exporter."""
    out = tmp_path_factory.mktemp("run")
    overrides = [s for s in SMALL if s.split("=")[0] not in ("model.name", "model.stem_stride", "train.bn_momentum")]
    fit(load_config(overrides=overrides + [
        "model.name=mobilenet_edgetpu_v2_tiny", "data.train_subset=6000", "train.epochs=3", "train.threads=2",
        f"out={out}"]), ClassificationTask())
    return out / "checkpoint.pt"


def test_onnx_and_int8_exports_pass_their_checks(trained, capsys, tmp_path):
    assert main(["export", str(trained), "--format", "onnx", "--out", str(tmp_path / "m.onnx"),
                 "--check-images", "200", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["max_abs_diff"] <= 1e-3 and report["max_rel_diff"] <= 1e-3
    assert (tmp_path / "m.onnx").stat().st_size == report["size_bytes"]
    assert main(["export", str(trained), "--format", "onnx-int8", "--out", str(tmp_path / "m8.onnx"),
                 "--check-images", "300", "--calibration-images", "128", "--json"]) == 0
    r8 = json.loads(capsys.readouterr().out)
    assert r8["top1_agreement"] >= 99.0 or r8["reference_top1"] - r8["top1"] <= 1.0
    assert (tmp_path / "m8.onnx").stat().st_size < 0.5 * report["size_bytes"]  # int8 weights


def test_tflite_export_matches_pytorch(trained, capsys, tmp_path):
    assert main(["export", str(trained), "--format", "tflite", "--out", str(tmp_path / "m.tflite"),
                 "--check-images", "20", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["max_abs_diff"] <= 1e-3 and report["images"] == 20


def test_tflite_int8_export_meets_the_int8_bar(trained, capsys, tmp_path):
    assert main(["export", str(trained), "--format", "tflite-int8", "--out", str(tmp_path / "m8.tflite"),
                 "--check-images", "300", "--calibration-images", "64", "--json"]) == 0
    r8 = json.loads(capsys.readouterr().out)
    assert r8["top1_agreement"] >= 99.0 or r8["reference_top1"] - r8["top1"] <= 1.0
    assert r8["reference_top1"] > 50 and r8["images"] == 300  # a model that has learned something
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tmp_path / "m8.tflite"))
    assert interpreter.get_input_details()[0]["dtype"].__name__ == "int8"  # integer end to end
    interpreter.allocate_tensors()
    dtypes = {d["index"]: d["dtype"].__name__ for d in interpreter.get_tensor_details()}
    convs = [op for op in interpreter._get_ops_details() if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    assert convs and all(dtypes[op["inputs"][0]] == dtypes[op["inputs"][1]] == "int8" for op in convs)


@pytest.mark.parametrize("gc_mode", ["native", "split"])
def test_gc_ibn_exports_native_or_split(gc_mode, tmp_path):
    torch.manual_seed(0)
    arch = get_arch("mobilenet_edgetpu_v2_tiny").replace(input_size=64)
    model = build_model(arch, gc_mode=gc_mode).eval()
    images = torch.randn(4, 3, 64, 64)
    report = export(model, "onnx", tmp_path / "t.onnx", images, torch.zeros(4, dtype=torch.long))
    assert report.max_abs_diff <= 1e-4
    import onnx

    ops = {n.op_type for n in onnx.load(str(tmp_path / "t.onnx")).graph.node}
    assert ("Slice" in ops or "Split" in ops) == (gc_mode == "split")


def test_a_failed_check_writes_nothing(tmp_path):
    model = build_model(get_arch("mobilenet_v3_small").replace(input_size=32)).eval()
    with pytest.raises(ExportError, match="differs from PyTorch on .* not written"):
        export(model, "onnx", tmp_path / "x.onnx", torch.randn(2, 3, 32, 32), torch.zeros(2),
               tolerance=Tolerance(atol=0.0, rtol=0.0))
    assert not (tmp_path / "x.onnx").exists()
    with pytest.raises(ExportError, match="unknown export format 'coreml'"):
        export(model, "coreml", tmp_path / "x", torch.randn(1, 3, 32, 32), torch.zeros(1))


@pytest.mark.parametrize("logits, verdict", [
    ([[3e4, 0.0], [3e4, 0.0]], "the model looks diverged"),  # huge logits
    ([[float("nan"), 0.0], [1.0, 0.0]], "1 non-finite"),
    ([[4.0, -1.0], [-2.0, 3.0]], "the model looks sound"),  # ordinary logits, both right
])
def test_a_failed_parity_check_says_what_the_model_looks_like(logits, verdict, tmp_path):
    import numpy as np

    reference = np.array(logits, dtype=np.float32)
    with pytest.raises(ExportError, match=verdict) as err:
        check_parity(reference + 1.0, reference, torch.tensor([0, 1]), FP32, "ONNX Runtime", tmp_path / "m.onnx")
    assert "not written" in str(err.value) and "on these 2 images" in str(err.value)


def _large_logit_net() -> torch.nn.Module:
    """A small convnet whose logits reach the thousands (as a classifier's do when its features are large),
    with a padded conv, a layer a broken exporter could drop, and channels it could swap."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
                              torch.nn.Conv2d(16, 32, 3, stride=2, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(32, 32, 1), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(32, 10))
    with torch.no_grad():
        net[1].running_var.uniform_(0.5, 2.0)
        net[-1].weight.mul_(10000.0)
        net[-1].bias.fill_(500.0)  # a common offset too: small differences between large logits
    return net.eval()


def test_an_honest_export_of_large_logits_passes(tmp_path):
    net, images = _large_logit_net(), torch.randn(64, 3, 32, 32)
    with torch.no_grad():
        logits = net(images)
    assert logits.abs().max() > 1000
    report = export(net, "onnx", tmp_path / "big.onnx", images, logits.argmax(1))
    assert report.top1_agreement == 100.0 and report.max_rel_diff < 1e-5 and (tmp_path / "big.onnx").is_file()


def _pad_zero_to_reflect(net):
    net[0].padding_mode = "reflect"  # what a wrong padding in an exporter computes


def _drop_layer(net):
    net[5] = torch.nn.Identity()  # the 1x1 conv left out


def _swap_channels(net):
    with torch.no_grad():
        net[3].weight.copy_(net[3].weight[:, torch.arange(15, -1, -1)])  # the conv reads its inputs reversed


@pytest.mark.parametrize("defect", [_pad_zero_to_reflect, _drop_layer, _swap_channels])
def test_a_real_export_defect_still_fails_the_check(defect, tmp_path, monkeypatch):
    """The exporter is swapped for one that writes a broken copy of the network: the check on the written
    graph's logits must refuse it, logits in the thousands notwithstanding."""
    import copy

    import edgenas.export.formats as formats

    net, images = _large_logit_net(), torch.randn(64, 3, 32, 32)
    broken = copy.deepcopy(net)
    defect(broken)
    monkeypatch.setattr(formats, "to_onnx", lambda module, inputs, dynamic_batch=False: to_onnx(broken, inputs,
                                                                                           dynamic_batch))
    with pytest.raises(ExportError, match="differs from PyTorch on .* images"):
        export(net, "onnx", tmp_path / "bad.onnx", images, torch.zeros(64, dtype=torch.long))
    assert not (tmp_path / "bad.onnx").exists()


def test_top1_agreement_is_part_of_the_rule():
    import numpy as np

    reference = np.array([[2.0, 1.0]] * 100, dtype=np.float32)
    flipped = reference.copy()
    flipped[:2] = [[1.0, 2.0]]  # 2 of 100 images change class: a 98% agreement
    loose = Tolerance(atol=10.0, rtol=0.0)  # values within tolerance, so only agreement can refuse
    with pytest.raises(ExportError, match=r"top-1 agreement with PyTorch 98.00% < 99%"):
        check_parity(flipped, reference, torch.zeros(100, dtype=torch.long), loose, "x", "m.onnx")
    # int8: the same agreement, but an accuracy drop within 1 point passes (here it gains)
    measured = check_parity(flipped, reference, torch.ones(100, dtype=torch.long), INT8, "x", "m.onnx")
    assert measured["top1_agreement"] == 98.0 and measured["top1"] == 2.0 and measured["reference_top1"] == 0.0


def test_quantization_quiets_onnxruntime_and_leaves_logging_as_it_was():
    import logging

    from edgenas.export.onnx import _quiet

    root, ort = logging.getLogger(), logging.getLogger("onnxruntime")
    before = (root.level, list(root.filters), ort.level, logging.root.manager.disable)
    with _quiet("onnxruntime"):
        assert ort.getEffectiveLevel() == logging.ERROR
        assert logging.getLogger("edgenas").isEnabledFor(logging.WARNING)  # others are not silenced
    assert (root.level, list(root.filters), ort.level, logging.root.manager.disable) == before


def _grouped_convs(path) -> list[str]:
    """The Conv nodes of an ONNX graph that are grouped but not depthwise (each group sees several channels)."""
    import onnx

    graph = onnx.load(str(path)).graph
    weights = {w.name: w.dims for w in graph.initializer}
    return [n.name for n in graph.node if n.op_type == "Conv" and weights[n.input[1]][1] > 1
            and any(a.name == "group" and a.i > 1 for a in n.attribute)]


@pytest.mark.parametrize("overrides", [
    ["task=segmentation", "model.name=deeplabv3plus_mobilenet_edgetpu_v2_xs", "model.input_size=64"],
    ["task=detection", "model.name=ssdlite_mobilenet_edgetpu_v2_s", "model.input_size=128"],
], ids=["segmentation", "detection"])
def test_the_exported_graph_is_the_model_given_split_convs_included(overrides, tmp_path):
    """Bug (a): segmentation's export rebuilt the network natively, so --gc-mode split exported native grouped
    convs. The task exports the model it is given: no grouped conv but depthwise ones, and parity holds."""
    cfg = load_config(overrides=overrides + ["data.train_subset=2", "data.val_subset=2"])
    task = get_task(cfg)
    spec = task.spec(cfg)
    model = build_model(spec, gc_mode="split").eval()
    assert any(isinstance(m, SplitGroupConv2d) for m in model.modules())  # the spec has GC blocks to split
    record, _ = task.export(model, "onnx", tmp_path / "m.onnx", cfg, spec, check=2, calibration=0)
    assert record["images"] == 2 and _grouped_convs(tmp_path / "m.onnx") == []


def test_no_test_images_is_one_line(tmp_path):
    class Images(list):
        transform = None

    class Empty:
        """A task whose datasets are empty."""

        def datasets(self, cfg, spec):
            return Images(), Images()

    images, labels, calib = parity_data(Empty(), None, None, check=5)
    assert len(images) == len(labels) == len(calib) == 0
    with pytest.raises(ExportError, match=r"x.onnx: no test images for the parity check"):
        export(torch.nn.Identity(), "onnx", tmp_path / "x.onnx", images, labels)
