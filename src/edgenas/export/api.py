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

The formats, how each is converted and run, are ``formats.Format``'s.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .formats import requested, stacked, write
from .onnx import ExportError


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
    form = requested(fmt, out, images, calibration)
    model = model.eval()
    tolerance = tolerance or (INT8 if form.int8 else FP32)
    reference = _torch_logits(model, images)
    data = form.convert(model, images[:1], calibration, calibration_batch=32)
    got = stacked(form.run(data, images, batch=64))[0]
    measured = check_parity(got, reference, labels, tolerance, f"{form.runtime} ({fmt})", out)
    if tolerance.rtol is None:  # int8: the per-logit figures are quantization's, not a check's
        measured.update(max_abs_diff=None, max_rel_diff=None)
    path, size = write(out, data)
    return ExportReport(fmt, path, len(images), size_bytes=size, **measured)
