"""Export a segmentation network with its serving tail (image in, class map out) and prove it by pixel
agreement with the PyTorch model's own class map.

The exported graph is ``Serving(model)``: the network and Google's finalize chain (``resize512,argmax`` exact,
or ``resize256,argmax,resize512`` with the elementwise argmax fused below full resolution). fp32 formats must
give PyTorch's class on ``FP32_AGREEMENT`` of pixels (only logits tied to float rounding may flip); int8
formats on ``INT8_AGREEMENT``, both reported, or nothing is written.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..io import write_atomic
from .onnx import ExportError, ort_session, quantize_int8, run_onnx, to_onnx

FP32_AGREEMENT = 0.999
INT8_AGREEMENT = 0.95


@dataclass
class SegExportReport:
    format: str
    path: str
    images: int
    tail: str
    pixel_agreement: float  # share of pixels whose class equals PyTorch's fp32 class
    size_bytes: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def _serving(model):
    from ..nn.network import Serving

    if model.tail is None:
        raise ExportError(f"{model.network.name or 'the network'} has no serving tail; give one "
                          "(e.g. --tail resize512,argmax or resize256,argmax,resize512)")
    return Serving(model).eval()


def _class_maps(module, images: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return np.concatenate([module(images[i:i + 8]).numpy() for i in range(0, len(images), 8)])


def _run_tflite_maps(path: Path, images: torch.Tensor) -> np.ndarray:
    """Class maps of a .tflite, through the classifier export's runner (NHWC, int8 I/O (de)quantised)."""
    from .api import _run_tflite

    return np.rint(_run_tflite(path, images)).reshape(len(images), *images.shape[-2:])


def export_network(model, fmt: str, out: str | Path, images: torch.Tensor,
                   calibration: torch.Tensor | None = None) -> SegExportReport:
    """Export ``model`` (a ``NetworkModel`` with a tail) to ``out`` in ``fmt``, checked on ``images``."""
    from .api import FORMATS

    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; known: {', '.join(FORMATS)}")
    if not len(images):
        raise ExportError(f"{out}: no test images for the parity check; an unchecked export is not written")
    serving = _serving(model)
    reference = _class_maps(serving, images)
    int8 = fmt.endswith("int8")
    if int8 and (calibration is None or not len(calibration)):
        raise ExportError(f"{fmt} needs calibration images")
    with tempfile.TemporaryDirectory() as tmp:
        if fmt.startswith("onnx"):
            data = to_onnx(serving, (images[:1],), dynamic_batch=True)
            if int8:
                data = quantize_int8(data, [(calibration[i:i + 1],) for i in range(len(calibration))])
            session = ort_session(data)
            got = np.concatenate([run_onnx(session, images[i:i + 1]) for i in range(len(images))])
        else:
            from .litert import to_tflite, to_tflite_int8

            path = Path(tmp) / "model.tflite"
            if int8:
                to_tflite_int8(serving, images[:1], list(calibration.split(1)), path)
            else:
                to_tflite(serving, (images[:1],), path)
            data = path.read_bytes()
            got = _run_tflite_maps(path, images)
        agreement = float((np.rint(got).reshape(reference.shape) == reference).mean())
        bar = INT8_AGREEMENT if int8 else FP32_AGREEMENT
        if agreement < bar:
            raise ExportError(f"{out}: {fmt} gives PyTorch's class on {agreement:.2%} of pixels, under the "
                              f"{bar:.1%} bar; not written")
        final = write_atomic(out, data)
    return SegExportReport(fmt, str(final), len(images), model.tail_text, agreement, final.stat().st_size)
