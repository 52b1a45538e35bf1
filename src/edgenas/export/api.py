"""Export a trained classifier and prove the export computes what the PyTorch model computes.

One parity rule for every format (``Tolerance``), measured on real test images, or the export fails and nothing is
written:

- **per-image scaled difference** (fp32 formats): every logit of an image within ``atol + rtol x`` that image's
  largest |logit|. Float32 rounding in a network grows with the size of the activations that produce a logit, not
  with the logit itself: a logit near 0 beside logits in the hundreds carries the rounding of the hundreds. The
  image's largest |logit| stands for that size; ``rtol`` 1e-5 is ~80 float32 epsilons, 15x the worst honest
  export recorded, while a real defect (a wrong padding, a dropped layer, swapped channels) moves logits by a
  sizable fraction of that scale.
- **top-1 agreement** with PyTorch, what a user of a classifier sees: at least 99% of images (fp32 and int8). An int8
  export that misses it still passes when it loses at most 1 point of accuracy (int8 moves near ties both ways).

``onnx``: ONNX Runtime. ``onnx-int8``: static int8 quantization calibrated on training images. ``tflite``: LiteRT
via litert-torch with NHWC input, in ai-edge-litert. ``tflite-int8``: litert-torch's PT2E quantizer, int8 end to end
(input and output included).
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
    max_abs_diff: float | None = None  # against PyTorch, over every logit of every image
    max_rel_diff: float | None = None  # the worst image's max |diff| over that image's largest |logit|
    reference_top1: float | None = None  # PyTorch's accuracy on the same images
    top1: float | None = None  # the export's accuracy on them
    top1_agreement: float | None = None  # share of images whose top-1 class matches PyTorch's, %
    size_bytes: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def _batches(x: torch.Tensor, size: int = 64):
    return [x[i:i + size] for i in range(0, len(x), size)]


def _torch_logits(model: nn.Module, images: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return torch.cat([model(b) for b in _batches(images)]).numpy()


@dataclass(frozen=True)
class Tolerance:
    """The parity bar of a format (module docstring). ``rtol`` None: no per-logit bound (int8)."""

    atol: float = 1e-4
    rtol: float | None = 1e-5
    min_agreement: float = 99.0  # % of images with PyTorch's top-1 class
    max_drop: float | None = None  # accuracy points an export below ``min_agreement`` may still lose


FP32 = Tolerance()
INT8 = Tolerance(rtol=None, max_drop=1.0)


def check_parity(got: np.ndarray, reference: np.ndarray, labels: torch.Tensor, tolerance: Tolerance, what: str,
                 out) -> dict:
    """Compare an export's logits with PyTorch's, image by image; the measurements (``ExportReport``'s fields)
    when they clear ``tolerance``, else an ``ExportError`` that names the worst image and what PyTorch's own
    logits look like."""
    got, reference = np.asarray(got, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if got.shape != reference.shape:
        raise ExportError(f"{out}: {what} gives logits of shape {got.shape}, PyTorch {reference.shape}; not written")
    flat_got, flat_ref = got.reshape(len(got), -1), reference.reshape(len(reference), -1)
    diff = np.abs(flat_got - flat_ref)
    scale = np.abs(flat_ref).max(1)  # each image's largest |logit|
    finite = np.isfinite(diff).all(1)
    worst = np.where(finite, diff.max(1, initial=0.0), np.inf)
    y, ref_pred, pred = labels.numpy(), flat_ref.argmax(1), flat_got.argmax(1)
    measured = {"max_abs_diff": float(worst.max()), "max_rel_diff": float((worst / np.maximum(scale, 1e-12)).max()),
                "reference_top1": float((ref_pred == y).mean() * 100), "top1": float((pred == y).mean() * 100),
                "top1_agreement": float((pred == ref_pred).mean() * 100)}
    if not finite.all():
        raise ExportError(f"{out}: {what} gives non-finite logits on {int((~finite).sum())} of {len(got)} images; "
                          f"not written. {_diagnosis(reference, labels)}")
    if tolerance.rtol is not None:
        bound = tolerance.atol + tolerance.rtol * scale
        bad = worst > bound
        if bad.any():
            i = int(np.argmax(worst - bound))  # the worst excess (a bound can be 0)
            raise ExportError(
                f"{out}: {what} differs from PyTorch on {int(bad.sum())} of {len(got)} images, worst image {i} by "
                f"{worst[i]:.2e} where its tolerance is {bound[i]:.2e} ({tolerance.atol:g} + {tolerance.rtol:g} x its "
                f"largest |logit| {scale[i]:.3g}); not written. {_diagnosis(reference, labels)}")
    agreement, drop = measured["top1_agreement"], measured["reference_top1"] - measured["top1"]
    if agreement < tolerance.min_agreement and (tolerance.max_drop is None or drop > tolerance.max_drop):
        allowance = f" and accuracy drop {drop:.2f} > {tolerance.max_drop:g} point" if tolerance.max_drop else ""
        raise ExportError(f"{out}: {what} top-1 agreement with PyTorch {agreement:.2f}% < "
                          f"{tolerance.min_agreement:g}%{allowance}; not written")
    return measured


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
           calibration: torch.Tensor | None = None, tolerance: Tolerance | None = None) -> ExportReport:
    """Export ``model`` to ``out`` in ``fmt`` after checking it on ``images`` and their ``labels``
    (``tolerance``: the format's own bar, ``FP32`` or ``INT8``, unless given)."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; known: {', '.join(FORMATS)}")
    if not len(images):
        raise ExportError(f"{out}: no test images for the parity check; an unchecked export is not written")
    model = model.eval()
    tolerance = tolerance or (INT8 if fmt.endswith("-int8") else FP32)
    reference = _torch_logits(model, images)
    if fmt.endswith("-int8"):
        _needs_calibration(fmt, calibration)
    with tempfile.TemporaryDirectory() as tmp:
        if fmt.startswith("tflite"):
            from .litert import to_tflite, to_tflite_int8

            path = Path(tmp) / "model.tflite"
            if fmt == "tflite":
                to_tflite(model, (images[:1],), path)
            else:
                to_tflite_int8(model, images[:1], list(calibration.split(1)), path)
            got, what = _run_tflite(path, images), "LiteRT"
            data = path.read_bytes()
        else:
            data = to_onnx(model, (images[:1],), dynamic_batch=True)
            if fmt == "onnx-int8":
                data = quantize_int8(data, [(b,) for b in _batches(calibration, 32)])
            session = ort_session(data)
            got, what = np.concatenate([run_onnx(session, b) for b in _batches(images)]), "ONNX Runtime"
    measured = check_parity(got, reference, labels, tolerance, f"{what} ({fmt})", out)
    if tolerance.rtol is None:  # int8: the per-logit figures are quantization's, not a check's
        measured.update(max_abs_diff=None, max_rel_diff=None)
    path = write_atomic(out, data)
    return ExportReport(fmt, str(path), len(images), size_bytes=path.stat().st_size, **measured)


def parity_data(cfg, arch, check: int = 1000, calibration: int = 256) -> tuple[torch.Tensor, ...]:
    """(test images, their labels, training images for int8 ranges) of a run's dataset, transformed as the
    deployed model sees them (no augmentation)."""
    from ..tasks.classification import datasets

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
