"""ONNX export, checked against PyTorch in ONNX Runtime, and static int8 post-training quantization."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import EdgenasError


class ExportError(EdgenasError):
    """An export failed its parity check; nothing was written to the requested path."""


def to_onnx(module: nn.Module, inputs: tuple[torch.Tensor, ...], dynamic_batch: bool = False) -> bytes:
    """ONNX bytes of ``module`` (eval mode) with the TorchScript exporter (``dynamo=False``: the same graph
    for these convnets, and 10-50x faster per layer). Inputs are named in0, in1, ...; the output out0."""
    buf = io.BytesIO()
    names = [f"in{i}" for i in range(len(inputs))]
    axes = {n: {0: "batch"} for n in names + ["out0"]} if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(module.eval(), inputs, buf, dynamo=False, opset_version=17, input_names=names,
                          output_names=["out0"], dynamic_axes=axes)
    return buf.getvalue()


def ort_session(model: bytes | str, threads: int | None = None, layout_rewrite: bool = True):
    """A CPU session. ``layout_rewrite=False`` stops ORT's NCHWc rewrite (used to time one-layer graphs,
    where its reorders at the graph edges would be charged to the layer)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    if not layout_rewrite:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def run_onnx(session, x: torch.Tensor) -> np.ndarray:
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


class _DropFrom(logging.Filter):
    """Drops records up to WARNING emitted by code under a package (told by its source path)."""

    def __init__(self, package: str):
        super().__init__()
        self.part = f"{os.sep}{package}{os.sep}"

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.WARNING or self.part not in record.pathname


@contextlib.contextmanager
def _quiet(package: str):
    """Silence a package's advice (INFO/WARNING) for a while and leave logging as it was: its own loggers
    get a higher level, and what it logs through the root logger (``logging.warning(...)``) is filtered
    there. Other code's records pass untouched."""
    own, drop = logging.getLogger(package), _DropFrom(package)
    level = own.level
    own.setLevel(logging.ERROR)
    logging.getLogger().addFilter(drop)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(drop)
        own.setLevel(level)


def quantize_int8(model: bytes, calibration: list[tuple[torch.Tensor, ...]]) -> bytes:
    """Static int8 post-training quantization with ONNX Runtime's tools: QDQ format, per-channel int8 weights,
    uint8 activations, ranges from ``calibration`` inputs. BatchNorm is folded first (``quant_pre_process``)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.feeds = iter([{f"in{i}": t.numpy() for i, t in enumerate(batch)} for batch in calibration])

        def get_next(self):
            return next(self.feeds, None)

    with _quiet("onnxruntime"), tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw, src, dst = f"{tmp}/raw.onnx", f"{tmp}/fp32.onnx", f"{tmp}/int8.onnx"
        Path(raw).write_bytes(model)
        quant_pre_process(raw, src)
        quantize_static(src, dst, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)
        return Path(dst).read_bytes()

