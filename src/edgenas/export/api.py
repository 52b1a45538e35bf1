"""Export a trained classifier and prove the export computes what the PyTorch model computes.

``onnx``: ONNX Runtime's logits within 1e-4 of PyTorch's on real images (plus 1e-5 of the logit's magnitude:
float32 rounding of a logit of 30 is already ~1e-5, and runtimes fold BatchNorm in another order), or the export
fails and nothing is written. ``onnx-int8``: static int8 quantization calibrated on training images; on the test images
the int8 model must agree with the fp32 model on top-1 for at least 99% of images or lose at most 1 point of
accuracy (both are reported). ``tflite``: LiteRT via litert-torch with NHWC input, checked in ai-edge-litert
like ONNX. ``tflite-int8``: litert-torch's PT2E quantizer, int8 end to end (input and output included), under
the same bars as ``onnx-int8``.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..io import write_atomic
from .onnx import ExportError, ort_session, quantize_int8, run_onnx, to_onnx

FORMATS = ("onnx", "onnx-int8", "tflite", "tflite-int8")


@dataclass
class ExportReport:
    format: str
    path: str
    images: int
    max_abs_diff: float | None = None  # fp32 formats: against PyTorch
    max_rel_diff: float | None = None  # max |diff| over the largest |logit|
    reference_top1: float | None = None  # int8: the fp32 model's accuracy on the same images
    top1: float | None = None
    top1_agreement: float | None = None  # int8: share of images whose top-1 class matches the fp32 model's
    size_bytes: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def _batches(x: torch.Tensor, size: int = 64):
    return [x[i:i + size] for i in range(0, len(x), size)]


def _torch_logits(model: nn.Module, images: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return torch.cat([model(b) for b in _batches(images)]).numpy()


def _parity(got: np.ndarray, reference: np.ndarray, labels: torch.Tensor, atol: float, rtol: float, what: str,
            out) -> tuple[float, float]:
    diff = np.abs(got - reference)
    if not np.isfinite(diff).all() or (diff > atol + rtol * np.abs(reference)).any():
        worst = np.nanmax(np.where(np.isfinite(diff), diff, np.nan)) if np.isfinite(diff).any() else float("nan")
        raise ExportError(f"{out}: {what} differs from PyTorch by up to {worst:.2e} (tolerance {atol:g} + "
                          f"{rtol:g} x |logit|); not written. {_diagnosis(reference, labels)}")
    return float(diff.max()), float(diff.max() / max(float(np.abs(reference).max()), 1e-12))


def _diagnosis(logits: np.ndarray, labels: torch.Tensor) -> str:
    """What the PyTorch model's own logits say about a failed parity check: a model that diverged in training
    (non-finite or huge logits, chance accuracy) amplifies every rounding difference, and retraining is the
    fix; ordinary logits point at the exporter or the runtime instead."""
    finite = np.isfinite(logits)
    accuracy = float((logits.argmax(1) == labels.numpy()).mean() * 100)
    chance = 100 / logits.shape[1]
    peak = float(np.abs(logits[finite]).max()) if finite.any() else float("nan")
    facts = (f"PyTorch's own logits on these {len(logits)} images: max |logit| {peak:.3g}"
             + (f", {int((~finite).sum())} non-finite" if not finite.all() else "")
             + f", top-1 {accuracy:.1f}% (chance {chance:.0f}%)")
    if not finite.all() or peak > 1e3 or accuracy <= 1.5 * chance:
        return (f"{facts}: the model looks diverged, so retrain it (a lower train.lr, or train.grad_clip) "
                "before exporting")
    return f"{facts}: the model looks sound, so the exporter or runtime disagrees (try --gc-mode split)"


def export(model: nn.Module, fmt: str, out: str | Path, images: torch.Tensor, labels: torch.Tensor,
           calibration: torch.Tensor | None = None, atol: float = 1e-4, rtol: float = 1e-5) -> ExportReport:
    """Export ``model`` to ``out`` in ``fmt`` after checking it on ``images`` (and ``labels`` for int8)."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; known: {', '.join(FORMATS)}")
    if not len(images):
        raise ExportError(f"{out}: no test images for the parity check; an unchecked export is not written")
    model = model.eval()
    reference = _torch_logits(model, images)
    example = images[:1]
    if fmt == "tflite":
        return _tflite(model, out, images, labels, reference, atol, rtol)
    if fmt == "tflite-int8":
        return _tflite_int8(model, out, images, labels, reference, calibration)
    fp32 = to_onnx(model, (example,), dynamic_batch=True)
    if fmt == "onnx":
        session = ort_session(fp32)
        got = np.concatenate([run_onnx(session, b) for b in _batches(images)])
        diff, rel = _parity(got, reference, labels, atol, rtol, "ONNX Runtime", out)
        path = write_atomic(out, fp32)
        return ExportReport(fmt, str(path), len(images), max_abs_diff=diff, max_rel_diff=rel,
                            size_bytes=path.stat().st_size)
    _needs_calibration(fmt, calibration)
    int8 = quantize_int8(fp32, [(b,) for b in _batches(calibration, 32)])
    session = ort_session(int8)
    got = np.concatenate([run_onnx(session, b) for b in _batches(images)])
    report = _int8_report(fmt, out, got, reference, labels)
    report.size_bytes = write_atomic(out, int8).stat().st_size
    return report


def parity_data(cfg, arch, check: int = 1000, calibration: int = 256) -> tuple[torch.Tensor, ...]:
    """(test images, their labels, training images for int8 ranges) of a run's dataset, transformed as the
    deployed model sees them (no augmentation)."""
    from ..train.setup import datasets

    train_set, val_set = datasets(cfg, arch)
    train_set.transform = val_set.transform
    n = min(check, len(val_set))
    images = torch.stack([val_set[i][0] for i in range(n)])
    labels = torch.tensor([val_set[i][1] for i in range(n)])
    calib = [train_set[i][0] for i in range(min(calibration, len(train_set)))]
    return images, labels, torch.stack(calib) if calib else images[:0]


def _needs_calibration(fmt: str, calibration) -> None:
    if calibration is None or not len(calibration):
        raise ExportError(f"{fmt} needs calibration images")


def _int8_report(fmt: str, out, got: np.ndarray, reference: np.ndarray, labels: torch.Tensor) -> ExportReport:
    """The int8 bar: top-1 agreement with fp32 >= 99% or accuracy drop <= 1 point; raises when both fail."""
    ref_pred, pred, y = reference.argmax(1), got.argmax(1), labels.numpy()
    report = ExportReport(fmt, str(out), len(got), reference_top1=float((ref_pred == y).mean() * 100),
                          top1=float((pred == y).mean() * 100), top1_agreement=float((pred == ref_pred).mean() * 100))
    if report.top1_agreement < 99.0 and report.reference_top1 - report.top1 > 1.0:
        raise ExportError(f"{out}: int8 top-1 agreement {report.top1_agreement:.2f}% < 99% and accuracy drop "
                          f"{report.reference_top1 - report.top1:.2f} > 1 point; not written")
    return report


def run_tflite_outputs(path: Path, images: torch.Tensor) -> list[tuple[dict, np.ndarray]]:
    """Every output of a .tflite on NCHW ``images``, as (its details, stacked values), one NHWC image at a
    time as deployed; int8 inputs are quantized with the model's own scale and zero point and int8 outputs
    dequantized."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    inp, outputs = interpreter.get_input_details()[0], interpreter.get_output_details()
    got: list[list[np.ndarray]] = [[] for _ in outputs]
    for x in images:
        x = x.permute(1, 2, 0).unsqueeze(0).numpy()
        if inp["dtype"] == np.int8:
            scale, zero = inp["quantization"]
            x = np.clip(np.round(x / scale) + zero, -128, 127).astype(np.int8)
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        for store, detail in zip(got, outputs):
            y = interpreter.get_tensor(detail["index"])[0]
            if detail["dtype"] == np.int8:
                scale, zero = detail["quantization"]
                y = (y.astype(np.float32) - zero) * scale
            store.append(y)
    return [(detail, np.stack(values)) for detail, values in zip(outputs, got)]


def _run_tflite(path: Path, images: torch.Tensor) -> np.ndarray:
    """Logits of a classifier .tflite (its first output) on NCHW ``images``."""
    return run_tflite_outputs(path, images)[0][1]


def _tflite(model, out, images, labels, reference, atol, rtol) -> ExportReport:
    from .litert import to_tflite

    with tempfile.TemporaryDirectory() as tmp:
        path = to_tflite(model, (images[:1],), Path(tmp) / "model.tflite")
        diff, rel = _parity(_run_tflite(path, images), reference, labels, atol, rtol, "LiteRT", out)
        final = write_atomic(out, path.read_bytes())
    return ExportReport("tflite", str(final), len(images), max_abs_diff=diff, max_rel_diff=rel,
                        size_bytes=final.stat().st_size)


def _tflite_int8(model, out, images, labels, reference, calibration) -> ExportReport:
    from .litert import to_tflite_int8

    _needs_calibration("tflite-int8", calibration)
    with tempfile.TemporaryDirectory() as tmp:
        path = to_tflite_int8(model, images[:1], list(calibration.split(1)), Path(tmp) / "model.tflite")
        report = _int8_report("tflite-int8", out, _run_tflite(path, images), reference, labels)
        report.size_bytes = write_atomic(out, path.read_bytes()).stat().st_size
    return report
