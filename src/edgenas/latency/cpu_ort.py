"""``cpu-ort``: CPU latency measured with ONNX Runtime, predicted from a per-layer lookup table.

Each distinct layer is exported alone (conv with its BN folded into a bias, then its activation;
``dynamo=False``, which gives the same graph 10-50x faster) and timed in an ORT session with fixed threads:
warm-up, then the median of N runs. Whole models are timed the same way. Predicting: scale x (sum of the
layers' medians) + a + b x layers, fitted on whole-model measurements (``measured.MeasuredModel``).
"""

from __future__ import annotations

import io
import logging
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from .base import LatencyError
from .measured import MeasuredModel


def to_onnx(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(module.eval(), inputs, buf, dynamo=False, opset_version=17,
                          input_names=[f"in{i}" for i in range(len(inputs))])
    return buf.getvalue()


def time_onnx(model: bytes, inputs: tuple[torch.Tensor, ...], threads: int, runs: int, warmup: int = 3) -> list[float]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.log_severity_level = 3
    # No NCHWc layout rewrite: in a one-layer graph its reorders at the graph edges would be charged to the layer.
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    feed = {f"in{i}": t.numpy() for i, t in enumerate(inputs)}
    for _ in range(warmup):
        session.run(None, feed)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def quantize_int8(model: bytes, inputs: tuple[torch.Tensor, ...], calibration: int = 4) -> bytes:
    """Static int8 post-training quantization (QDQ, per-channel int8 weights, uint8 activations), calibrated on
    ``calibration`` random draws shaped like ``inputs``: the graph ORT runs with int8 kernels."""
    import tempfile

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            gen = torch.Generator().manual_seed(0)
            self.feeds = iter([{f"in{i}": torch.randn(t.shape, generator=gen).numpy() for i, t in enumerate(inputs)}
                               for _ in range(calibration)])

        def get_next(self):
            return next(self.feeds, None)

    logging.disable(logging.WARNING)  # the quantizer logs advice on the root logger for every graph
    try:
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw, src, dst = f"{tmp}/raw.onnx", f"{tmp}/fp32.onnx", f"{tmp}/int8.onnx"
            Path(raw).write_bytes(model)
            quant_pre_process(raw, src)  # folds BatchNorm into the convs and fixes shapes, as ORT recommends
            quantize_static(src, dst, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)
            return Path(dst).read_bytes()
    finally:
        logging.disable(logging.NOTSET)


class CpuOrtModel(MeasuredModel):
    name = "cpu-ort"
    runtime = "onnxruntime"

    def __init__(self, *, precision: str = "fp32", **kwargs):
        if precision not in ("fp32", "int8"):
            raise LatencyError(f"cpu-ort measures fp32 or int8, not {precision!r}")
        super().__init__(precision=precision, **kwargs)
        self.name = "cpu-ort-int8" if precision == "int8" else "cpu-ort"

    def runtime_version(self) -> str:
        import onnxruntime as ort

        return ort.__version__

    def time_module(self, module, inputs, runs):
        model = to_onnx(module, inputs)
        if self.precision == "int8":
            model = quantize_int8(model, inputs)
        return time_onnx(model, inputs, self.threads, runs)
