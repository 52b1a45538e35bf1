"""Export a segmentation network with its serving tail (image in, class map out) and prove it by pixel
agreement with the PyTorch model's own class map.

The exported graph is ``nn.network.Serving(model, tail)``: the network as given (its gc_mode, padding and
weights: it is never rebuilt) and Google's finalize chain (``resize512,argmax`` exact, or
``resize256,argmax,resize512`` with the elementwise argmax fused below full resolution). fp32 formats must
give PyTorch's class on ``FP32_AGREEMENT`` of pixels (only logits tied to float rounding may flip); int8
formats on ``INT8_AGREEMENT``, both reported, or nothing is written.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..nn.network import Serving
from ..spec import Tail
from .formats import requested, stacked, write
from .onnx import ExportError

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


def _class_maps(module: nn.Module, images: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return np.concatenate([module(images[i:i + 8]).numpy() for i in range(0, len(images), 8)])


def export_network(model, fmt: str, out: str | Path, images: torch.Tensor,
                   calibration: torch.Tensor | None = None, *, tail: Tail | None = None) -> SegExportReport:
    """Export ``model`` (a ``NetworkModel``) with ``tail`` (default: its network's own) to ``out`` in
    ``fmt``, checked on ``images``."""
    tail = tail or model.network.tail
    if tail is None:
        raise ExportError(f"{model.network.name or 'the network'} has no serving tail; give one "
                          "(e.g. --tail resize512,argmax or resize256,argmax,resize512)")
    form = requested(fmt, out, images, calibration)
    serving = Serving(model, tail).eval()
    reference = _class_maps(serving, images)
    data = form.convert(serving, images[:1], calibration)
    got = stacked(form.run(data, images))[0]
    agreement = float((np.rint(got).reshape(reference.shape) == reference).mean())
    bar = INT8_AGREEMENT if form.int8 else FP32_AGREEMENT
    if agreement < bar:
        raise ExportError(f"{out}: {fmt} gives PyTorch's class on {agreement:.2%} of pixels, under the "
                          f"{bar:.1%} bar; not written")
    path, size = write(out, data)
    return SegExportReport(fmt, path, len(images), tail.text, agreement, size)
