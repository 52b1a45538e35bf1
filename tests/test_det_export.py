"""Detector export: ONNX with NMS in the graph against ``postprocess``, int8 ONNX, LiteRT raw heads and int8
LiteRT, on a small SSDLite-like stand-in detector."""

from __future__ import annotations

import re

import onnx
import pytest
import torch
from torch import nn

from edgenas.det import CLASS_BIAS_INIT, Detections, anchors_per_location, postprocess, ssd_anchors
from edgenas.export import ExportError
from edgenas.export.detection import (OUTPUTS, DecodedDetector, check_detection_parity, export_detector,
                                      run_tflite_heads, to_onnx_with_nms)
from edgenas.export.onnx import ort_session

SIZE, NUM_CLASSES = 64, 2
FEATURES = ((8, 8), (4, 4))


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU6())


class Predictor(nn.Module):
    """SSDLite box predictor of one level: 3x3 depthwise + BN + ReLU6, then 1x1 to classes and to codes."""

    def __init__(self, channels: int, anchors: int):
        super().__init__()
        self.dw = nn.Sequential(nn.Conv2d(channels, channels, 3, 1, 1, groups=channels, bias=False),
                                nn.BatchNorm2d(channels), nn.ReLU6())
        self.cls = nn.Conv2d(channels, anchors * (NUM_CLASSES + 1), 1)
        self.box = nn.Conv2d(channels, anchors * 4, 1)
        nn.init.constant_(self.cls.bias, CLASS_BIAS_INIT)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.dw(x)
        b = len(x)
        return (self.cls(x).permute(0, 2, 3, 1).reshape(b, -1, NUM_CLASSES + 1),
                self.box(x).permute(0, 2, 3, 1).reshape(b, -1, 4))


class StandIn(nn.Module):
    """Two levels (8x8 and 4x4 from 64x64), the detector interface: (cls_logits, box_deltas), anchors,
    num_classes."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.num_classes = NUM_CLASSES
        self.stem = nn.Sequential(_conv(3, 16), _conv(16, 16), _conv(16, 24))
        self.down = _conv(24, 32)
        per_cell = anchors_per_location(2)
        self.heads = nn.ModuleList([Predictor(24, per_cell[0]), Predictor(32, per_cell[1])])
        self.register_buffer("anchors", ssd_anchors(FEATURES, image_size=(SIZE, SIZE)))
        for m in self.modules():  # He init: features (and so detections) vary from image to image
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
        self.plant(level=0, box=0, cls=1)
        self.plant(level=1, box=2, cls=2)

    @torch.no_grad()
    def plant(self, level: int, box: int, cls: int, mean: float = -1.0, std: float = 2.5) -> None:
        """Make class ``cls``'s logit of box ``box`` in ``level``'s cells image-dependent, with this ``mean``
        and ``std`` over random images: some cells of each image detect, others do not."""
        conv, per_cell = self.heads[level].cls, anchors_per_location(2)
        start = sum(h * w * a for (h, w), a in zip(FEATURES[:level], per_cell))
        end = start + FEATURES[level][0] * FEATURES[level][1] * per_cell[level]
        channel = box * (NUM_CLASSES + 1) + cls
        probe = torch.randn(8, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(99))
        logits = self(probe)[0][:, start + box:end:per_cell[level], cls] - conv.bias[channel]
        conv.weight[channel] *= std / logits.std()
        conv.bias[channel] = mean - logits.mean() * std / logits.std()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f0 = self.stem(x)
        outs = [head(f) for head, f in zip(self.heads, (f0, self.down(f0)))]
        return torch.cat([c for c, _ in outs], 1), torch.cat([b for _, b in outs], 1)


@pytest.fixture(scope="module")
def model() -> StandIn:
    return StandIn().eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(6, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


def _onnx_detections(data: bytes, images: torch.Tensor) -> list[Detections]:
    session = ort_session(data)
    return [Detections(*(torch.from_numpy(t) for t in session.run(list(OUTPUTS), {"in0": x[None].numpy()})))
            for x in images]


def _confident(dets: list[Detections]) -> int:
    return sum(int((d.scores > 0.3).sum()) for d in dets)


def test_onnx_graph_runs_nms_and_matches_postprocess(model, images):
    data = to_onnx_with_nms(model, images[:1])
    ops = {n.op_type for n in onnx.load_from_string(data).graph.node}
    assert {"NonMaxSuppression", "TopK", "Sigmoid", "Exp"} <= ops
    reference = postprocess(*model(images), model.anchors)
    got = _onnx_detections(data, images)
    assert _confident(reference) >= 5 * len(images)  # planted detections, not only background noise
    assert check_detection_parity(reference, got) == 1.0
    for ref, det in zip(reference, got):
        assert det.classes.dtype == torch.int64 and len(det.scores) == len(ref.scores) == 100
        torch.testing.assert_close(det.boxes, ref.boxes, atol=1e-5, rtol=0)
        assert det.boxes.min() >= 0 and det.boxes.max() <= 1
        assert torch.equal(det.scores, det.scores.sort(descending=True).values)


def test_decoded_detector_gives_nms_inputs(model, images):
    boxes, scores = DecodedDetector(model)(images[:2])
    n = len(model.anchors)
    assert boxes.shape == (2, n, 4) and scores.shape == (2, NUM_CLASSES, n)
    cls_logits, _ = model(images[:2])
    torch.testing.assert_close(scores, torch.sigmoid(cls_logits[..., 1:]).transpose(1, 2))


def test_fewer_candidates_than_max_detections(model, images):
    x = images[:1]
    with torch.no_grad():
        cls_logits, box_deltas = model(x)
    ranked = torch.sigmoid(cls_logits[..., 1:]).flatten().sort(descending=True).values
    for kw, expected in [({}, 5), ({"score_threshold": float(ranked[1:3].mean())}, 2),
                         ({"score_threshold": float(ranked[0]) + 1e-3}, 0)]:
        data = to_onnx_with_nms(model, x, max_detections=5, **kw)
        reference = postprocess(cls_logits, box_deltas, model.anchors, max_detections=5, **kw)
        got = _onnx_detections(data, x)
        assert len(got[0].scores) == len(reference[0].scores) == expected
        assert check_detection_parity(reference, got) == 1.0


def test_parity_matches_by_class_and_box_not_position():
    boxes = torch.tensor([[0.1, 0.1, 0.3, 0.3], [0.5, 0.5, 0.9, 0.9]])
    ref = Detections(boxes, torch.tensor([0.5, 0.5]), torch.tensor([1, 2]))
    swapped = Detections(boxes.flip(0), torch.tensor([0.5, 0.5]), torch.tensor([2, 1]))
    assert check_detection_parity([ref], [swapped]) == 1.0
    wrong_class = Detections(boxes, ref.scores, torch.tensor([2, 2]))
    extra = Detections(torch.cat([boxes, boxes[:1] / 2]), torch.tensor([0.5, 0.5, 0.1]),
                       torch.tensor([1, 2, 1]))
    assert check_detection_parity([ref], [wrong_class]) == 0.5
    assert check_detection_parity([ref], [extra]) == 2 / 3
    assert check_detection_parity([ref], [Detections(boxes, ref.scores + 1e-3, ref.classes)]) == 0.0


def test_onnx_export_checks_then_writes(model, images, tmp_path):
    report = export_detector(model, "onnx", tmp_path / "det.onnx", images)
    assert report.agreement >= 0.99 and report.detections == 100 * len(images) and report.nms == "in graph"
    assert (tmp_path / "det.onnx").stat().st_size == report.size_bytes


def test_onnx_int8_keeps_the_tail_float_and_passes_its_bar(model, images, tmp_path):
    calibration = torch.randn(16, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    report = export_detector(model, "onnx-int8", tmp_path / "det8.onnx", images, calibration)
    assert report.agreement >= 0.9 and report.detections >= 5 * len(images)
    graph = onnx.load(tmp_path / "det8.onnx").graph
    qdq = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert qdq and not [n for n in qdq if n.output[0].startswith(("decode/", "nms/"))]
    assert "NonMaxSuppression" in {n.op_type for n in graph.node}


class Sabotaged(StandIn):
    """Exports something other than what it computes: the exported class-1 logits are 0.5 higher."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cls_logits, box_deltas = super().forward(x)
        if torch.onnx.is_in_onnx_export():
            cls_logits = cls_logits + torch.tensor([0.0, 0.5, 0.0])
        return cls_logits, box_deltas


def test_a_failed_check_writes_nothing_and_names_the_file(images, tmp_path):
    out = tmp_path / "bad.onnx"
    with pytest.raises(ExportError, match=rf"{re.escape(str(out))}: onnx agrees with PyTorch .* not written"):
        export_detector(Sabotaged().eval(), "onnx", out, images)
    assert not out.exists()


def test_int8_with_broken_ranges_fails_its_bar(model, images, tmp_path):
    out = tmp_path / "bad8.onnx"  # calibrated on blank images: every activation range collapses
    with pytest.raises(ExportError, match=rf"{re.escape(str(out))}: onnx-int8 finds .* under the 70% bar"):
        export_detector(model, "onnx-int8", out, images, torch.zeros(4, 3, SIZE, SIZE))
    assert not out.exists()


def test_tflite_exports_the_raw_heads(model, images, tmp_path):
    report = export_detector(model, "tflite", tmp_path / "det.tflite", images)
    assert report.max_abs_diff <= 1e-4 and report.nms == "postprocess"
    cls_logits, box_deltas = run_tflite_heads(tmp_path / "det.tflite", images, NUM_CLASSES)
    reference = postprocess(*model(images), model.anchors)
    got = postprocess(torch.from_numpy(cls_logits), torch.from_numpy(box_deltas), model.anchors)
    assert check_detection_parity(reference, got) >= 0.99


def test_tflite_int8_passes_its_bar(model, images, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    calibration = torch.randn(16, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    report = export_detector(model, "tflite-int8", tmp_path / "det8.tflite", images, calibration)
    assert report.agreement >= 0.9 and report.detections >= 5 * len(images)
    interpreter = Interpreter(model_path=str(tmp_path / "det8.tflite"))
    assert interpreter.get_input_details()[0]["dtype"].__name__ == "int8"
    assert list(interpreter.get_input_details()[0]["shape"]) == [1, SIZE, SIZE, 3]  # NHWC
