"""Export an SSD detector and prove the export detects what the PyTorch model detects.

A detector is a module whose ``forward(x [B, 3, H, W])`` gives ``(cls_logits [B, N, C+1], box_deltas
[B, N, 4])`` (logit column 0 the background, codes ``[ty, tx, th, tw]``) and which holds ``anchors`` [N, 4]
(normalized corners ``[ymin, xmin, ymax, xmax]``) and ``num_classes`` C; ``edgenas.det.postprocess`` turns
those outputs into detections. What runs inside the exported graph:

* ``onnx``, ``onnx-int8``: image in, detections out, for one image (batch 1). The network, then its
  ``Decoder`` (boxes decoded against the anchors, sigmoid scores of the C foreground columns), then ONNX's
  ``NonMaxSuppression`` per class (TF's class-aware NMS: scores strictly above ``score_threshold``, a box
  suppressed at IoU strictly above ``iou_threshold``, at most ``max_per_class`` per class), the survivors
  clipped to [0, 1] with those the clip leaves empty dropped (as ``postprocess`` drops them), and a ``TopK``
  of at most ``max_detections`` by score. Outputs ``detection_boxes`` [K, 4], ``detection_scores`` [K] and
  ``detection_classes`` [K] (int64, 1..C), best first, K <= max_detections. int8 quantizes the network alone
  (QDQ); decoding and the NMS tail are appended afterwards and stay float.
* ``tflite``, ``tflite-int8``: image in (NHWC, as ``to_tflite`` makes it), the raw heads out: ``cls_logits``
  [1, N, C+1] and ``box_deltas`` [1, N, 4] (``run_tflite_heads`` runs one). Decoding and NMS are
  post-processing the user runs: ``postprocess(cls_logits, box_deltas, anchors)`` with the model's anchors.

Checks on the test images, or nothing is written. ``onnx``: ``check_detection_parity`` with ``postprocess``'s
detections (TF's defaults) at least ``FP32_AGREEMENT``; only float rounding at an IoU or score boundary may
differ. ``tflite``: both raw outputs within ``TFLITE_ATOL`` + ``TFLITE_RTOL`` x |value| of PyTorch's. int8
formats: of PyTorch's detections scoring above ``INT8_MIN_SCORE`` (confident ones, not the background noise
that fills the 100 slots), at least ``INT8_AGREEMENT`` must have an int8 detection of the same class at IoU
>= ``INT8_IOU`` scoring above half that (tflite-int8 after ``postprocess``). Int8 moves scores by ~0.01 and
boxes by a few percent, which reorders close scores, moves detections across the score line and flips NMS
between overlapping boxes; 70% leaves room for that on a real model while broken quantization falls far
below it (on the test stand-in: 100% calibrated properly, 2% with ranges calibrated on blank images, 11% on
images at 5% contrast).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
import onnx.compose
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from ..det import Detections, decode, iou_matrix, postprocess
from .formats import requested, run_tflite, stacked, write
from .onnx import ExportError, to_onnx

FP32_AGREEMENT = 0.99
SCORE_ATOL = 1e-4
BOX_ATOL = 1e-4
BOX_IOU = 0.99
INT8_AGREEMENT = 0.7
INT8_MIN_SCORE = 0.3
INT8_IOU = 0.5
TFLITE_ATOL, TFLITE_RTOL = 1e-4, 1e-5
OUTPUTS = ("detection_boxes", "detection_scores", "detection_classes")
_NMS_OPSET = 11


@dataclass
class DetExportReport:
    format: str
    path: str
    images: int
    nms: str  # where decoding and NMS run: "in graph", or "postprocess" (edgenas.det.postprocess, user-run)
    detections: int = 0  # PyTorch's detections checked (int8: those above INT8_MIN_SCORE; tflite: none)
    agreement: float | None = None  # share of them the export finds (check_detection_parity; int8: its bar)
    max_abs_diff: float | None = None  # tflite: raw outputs against PyTorch's
    size_bytes: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


class Decoder(nn.Module):
    """Raw heads ``(cls_logits [B, N, C+1], box_deltas [B, N, 4])`` decoded against ``anchors`` [N, 4] into
    ``(boxes [B, N, 4] normalized corners, scores [B, C, N])``, the scores the sigmoid of the foreground
    columns: the inputs of ONNX's ``NonMaxSuppression`` with ``center_point_box=0`` (``[y1, x1, y2, x2]``,
    TF's order, so nothing is reordered)."""

    def __init__(self, anchors: torch.Tensor):
        super().__init__()
        self.register_buffer("anchors", anchors)

    def forward(self, cls_logits: torch.Tensor,
                box_deltas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return decode(box_deltas, self.anchors), torch.sigmoid(cls_logits[..., 1:].transpose(1, 2))


class DecodedDetector(nn.Module):
    """``model`` followed by its ``Decoder``: image in, ``(boxes [B, N, 4], scores [B, C, N])`` out."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.decoder = model, Decoder(model.anchors)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decoder(*self.model(x))


def _decoded(heads: bytes, model: nn.Module, example: torch.Tensor) -> bytes:
    """The ONNX of ``DecodedDetector(model)`` from ``heads``, the ONNX of ``model`` (maybe quantized), and a
    float export of its ``Decoder``. Quantizing the whole would quantize the decoded boxes and the scores
    (QDQ quantizes Concat and Sigmoid), moving small boxes by ~0.01, a tenth of their size."""
    with torch.no_grad():
        outputs = model.eval()(example)
    first = onnx.load_from_string(heads)
    second = onnx.load_from_string(to_onnx(Decoder(model.anchors).eval(), outputs))
    second.ir_version = first.ir_version
    io_map = [(o.name, f"in{i}") for i, o in enumerate(first.graph.output)]
    return onnx.compose.merge_models(first, second, io_map, prefix2="decode/").SerializeToString()


def _const(name: str, value, dtype) -> TensorProto:
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def _append_nms(data: bytes, iou_threshold: float = 0.6, score_threshold: float = 1e-8,
                max_detections: int = 100, max_per_class: int = 100) -> bytes:
    """``DecodedDetector``'s ONNX with NMS, clipping and the ``max_detections`` best appended (see above)."""
    proto = onnx.load_from_string(data)
    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    if opset < _NMS_OPSET:
        raise ExportError(f"ONNX opset {opset} has no NonMaxSuppression (needs {_NMS_OPSET})")
    boxes, scores = (o.name for o in proto.graph.output)
    n = "nms/"
    proto.graph.initializer.extend([
        _const(n + "max_per_class", [max_per_class], np.int64),
        _const(n + "max_det", [max_detections], np.int64),
        _const(n + "iou", [iou_threshold], np.float32), _const(n + "score", [score_threshold], np.float32),
        _const(n + "batch_box", [0, 2], np.int64), _const(n + "lo_cols", [0, 1], np.int64),
        _const(n + "hi_cols", [2, 3], np.int64), _const(n + "zero", 0, np.int64),
        _const(n + "one", 1, np.int64), _const(n + "lo", [0.0], np.float32),
        _const(n + "hi", [1.0], np.float32)])
    node = helper.make_node
    proto.graph.node.extend([
        node("NonMaxSuppression", [boxes, scores, n + "max_per_class", n + "iou", n + "score"],
             [n + "selected"], center_point_box=0),  # [S, 3]: (batch, class, anchor), class by class
        node("GatherND", [scores, n + "selected"], [n + "sel_scores"]),
        node("Gather", [n + "selected", n + "batch_box"], [n + "sel_ba"], axis=1),
        node("GatherND", [boxes, n + "sel_ba"], [n + "sel_boxes"]),
        node("Gather", [n + "selected", n + "one"], [n + "sel_col"], axis=1),
        node("Add", [n + "sel_col", n + "one"], [n + "sel_classes"]),
        node("Clip", [n + "sel_boxes", n + "lo", n + "hi"], [n + "clipped"]),
        node("Gather", [n + "clipped", n + "hi_cols"], [n + "hi_corner"], axis=1),
        node("Gather", [n + "clipped", n + "lo_cols"], [n + "lo_corner"], axis=1),
        node("Sub", [n + "hi_corner", n + "lo_corner"], [n + "size"]),  # [S, 2]: h, w
        node("Gather", [n + "size", n + "zero"], [n + "h"], axis=1),
        node("Gather", [n + "size", n + "one"], [n + "w"], axis=1),
        node("Mul", [n + "h", n + "w"], [n + "area"]),
        node("Greater", [n + "area", n + "lo"], [n + "nonempty"]),
        node("Compress", [n + "sel_scores", n + "nonempty"], [n + "kept_scores"], axis=0),
        node("Compress", [n + "clipped", n + "nonempty"], [n + "kept_boxes"], axis=0),
        node("Compress", [n + "sel_classes", n + "nonempty"], [n + "kept_classes"], axis=0),
        node("Shape", [n + "kept_scores"], [n + "found"]),
        node("Min", [n + "found", n + "max_det"], [n + "k"]),
        # equal scores keep NMS's order (lower class, then rank), as postprocess's stable sort orders them
        node("TopK", [n + "kept_scores", n + "k"], [OUTPUTS[1], n + "order"], axis=0, largest=1, sorted=1),
        node("Gather", [n + "kept_boxes", n + "order"], [OUTPUTS[0]], axis=0),
        node("Gather", [n + "kept_classes", n + "order"], [OUTPUTS[2]], axis=0)])
    del proto.graph.output[:]
    proto.graph.output.extend([
        helper.make_tensor_value_info(OUTPUTS[0], TensorProto.FLOAT, ["K", 4]),
        helper.make_tensor_value_info(OUTPUTS[1], TensorProto.FLOAT, ["K"]),
        helper.make_tensor_value_info(OUTPUTS[2], TensorProto.INT64, ["K"])])
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def to_onnx_with_nms(model: nn.Module, example: torch.Tensor, iou_threshold: float = 0.6,
                     score_threshold: float = 1e-8, max_detections: int = 100,
                     max_per_class: int = 100) -> bytes:
    """ONNX bytes of ``model`` with decoding and NMS inside: one image ``example`` [1, 3, H, W] in (input
    ``in0``), ``OUTPUTS`` out, as ``postprocess`` with the same arguments computes them."""
    data = _decoded(to_onnx(model.eval(), (example[:1],)), model, example[:1])
    return _append_nms(data, iou_threshold, score_threshold, max_detections, max_per_class)


def _match(ok: torch.Tensor, quality: torch.Tensor) -> int:
    """Size of a greedy one-to-one matching where ``ok`` [R, G] allows a pair, rows in order, each taking
    the free column of highest ``quality``."""
    free = torch.ones(ok.shape[1], dtype=torch.bool)
    matched = 0
    for row_ok, row_quality in zip(ok, quality):
        allowed = row_ok & free
        if allowed.any():
            free[torch.where(allowed, row_quality, -torch.inf).argmax()] = False
            matched += 1
    return matched


def check_detection_parity(torch_dets: Sequence[Detections], onnx_dets: Sequence[Detections]) -> float:
    """Share of detections found on both sides, per image paired one to one by class and box (IoU >
    ``BOX_IOU`` or corners within ``BOX_ATOL``) with scores within ``SCORE_ATOL``, not by position: equal
    scores may come in either order. Over the larger of the two counts, so extra detections count against
    it; 1.0 when neither side detects anything."""
    if len(torch_dets) != len(onnx_dets):
        raise ValueError(f"detections for {len(torch_dets)} and {len(onnx_dets)} images")
    matched = total = 0
    for ref, got in zip(torch_dets, onnx_dets):
        total += max(len(ref.scores), len(got.scores))
        iou = iou_matrix(ref.boxes.float(), got.boxes.float())
        close = (ref.boxes[:, None].float() - got.boxes[None].float()).abs().amax(-1) < BOX_ATOL
        ok = ((iou > BOX_IOU) | close) & (ref.classes[:, None] == got.classes[None])
        ok &= (ref.scores[:, None].float() - got.scores[None].float()).abs() <= SCORE_ATOL
        matched += _match(ok, iou)
    return matched / total if total else 1.0


def _int8_agreement(reference: Sequence[Detections], got: Sequence[Detections]) -> tuple[float, int]:
    """(share found, count) of ``reference`` detections above ``INT8_MIN_SCORE`` that ``got`` has: same
    class, IoU >= ``INT8_IOU``, scoring above ``INT8_MIN_SCORE / 2``."""
    matched = total = 0
    for ref, det in zip(reference, got):
        ref = Detections(*(t[ref.scores > INT8_MIN_SCORE] for t in ref))
        det = Detections(*(t[det.scores > INT8_MIN_SCORE / 2] for t in det))
        iou = iou_matrix(ref.boxes, det.boxes)
        matched += _match((iou >= INT8_IOU) & (ref.classes[:, None] == det.classes[None]), iou)
        total += len(ref.scores)
    return (matched / total if total else 0.0), total


def _torch_heads(model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        cls_logits, box_deltas = zip(*(model(images[i:i + 8]) for i in range(0, len(images), 8)))
    return torch.cat(cls_logits), torch.cat(box_deltas)


def _heads(model: bytes | str | Path, images: torch.Tensor, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The outputs are told apart by their last dimension (C+1 or 4), in output order when C = 3 makes them
    alike."""
    outputs = sorted(stacked(run_tflite(model, images)), key=lambda o: o.shape[-1] != num_classes + 1)
    return outputs[0], outputs[1]


def run_tflite_heads(path: str | Path, images: torch.Tensor,
                     num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """``(cls_logits [B, N, C+1], box_deltas [B, N, 4])`` of a detector .tflite on NCHW ``images``, one NHWC
    image at a time; int8 input quantized, int8 outputs dequantized with the model's own parameters."""
    return _heads(Path(path), images, num_classes)


def _check_int8(report: DetExportReport, reference: list[Detections], got: list[Detections], out) -> None:
    report.agreement, report.detections = _int8_agreement(reference, got)
    if not report.detections:
        raise ExportError(f"{out}: PyTorch detects nothing above {INT8_MIN_SCORE} on the {report.images} "
                          f"test images, so {report.format} cannot be checked; not written")
    if report.agreement < INT8_AGREEMENT:
        raise ExportError(f"{out}: {report.format} finds {report.agreement:.1%} of PyTorch's "
                          f"{report.detections} detections above {INT8_MIN_SCORE}, under the "
                          f"{INT8_AGREEMENT:.0%} bar; not written")


def _check_onnx(report: DetExportReport, reference: list[Detections], got: list[Detections], out) -> None:
    report.detections = sum(len(d.scores) for d in reference)
    report.agreement = check_detection_parity(reference, got)
    if report.agreement < FP32_AGREEMENT:
        raise ExportError(f"{out}: onnx agrees with PyTorch on {report.agreement:.2%} of detections, under "
                          f"the {FP32_AGREEMENT:.0%} bar; not written")


def _check_heads(report: DetExportReport, reference: tuple[torch.Tensor, torch.Tensor],
                 got: tuple[np.ndarray, np.ndarray], out) -> None:
    report.max_abs_diff = 0.0
    for name, ref, value in zip(("cls_logits", "box_deltas"), reference, got):
        ref_np = ref.numpy()
        diff = np.abs(value - ref_np)
        worst = float(np.nanmax(diff)) if np.isfinite(diff).any() else float("nan")
        if not np.isfinite(diff).all() or (diff > TFLITE_ATOL + TFLITE_RTOL * np.abs(ref_np)).any():
            raise ExportError(f"{out}: LiteRT's {name} differs from PyTorch's by up to {worst:.2e} "
                              f"(tolerance {TFLITE_ATOL:g} + {TFLITE_RTOL:g} x |value|); not written")
        report.max_abs_diff = max(report.max_abs_diff, worst)


def export_detector(model: nn.Module, fmt: str, out: str | Path, images: torch.Tensor,
                    calibration: torch.Tensor | None = None) -> DetExportReport:
    """Export detector ``model`` to ``out`` in ``fmt``, checked on ``images`` against ``postprocess`` with
    TF's defaults (``tflite``: against the raw heads); see the module docstring."""
    form = requested(fmt, out, images, calibration)
    model = model.eval()
    cls_logits, box_deltas = _torch_heads(model, images)
    reference = postprocess(cls_logits, box_deltas, model.anchors)
    report = DetExportReport(fmt, str(out), len(images), "postprocess" if form.litert else "in graph")
    # ONNX: batch 1, as the NMS tail appended to the graph works on one image
    data = form.convert(model, images[:1], calibration, dynamic_batch=False)
    if not form.litert:
        data = _append_nms(_decoded(data, model, images[:1]))
        got = [Detections(*(torch.from_numpy(t) for t in run)) for run in zip(*form.run(data, images))]
        (_check_int8 if form.int8 else _check_onnx)(report, reference, got, out)
    elif form.int8:
        got = postprocess(*(torch.from_numpy(h) for h in _heads(data, images, model.num_classes)), model.anchors)
        _check_int8(report, reference, got, out)
    else:
        _check_heads(report, (cls_logits, box_deltas), _heads(data, images, model.num_classes), out)
    report.path, report.size_bytes = write(out, data)
    return report
