"""``cpu-ort``: CPU latency measured with ONNX Runtime, predicted from a per-layer lookup table.

Each distinct layer is exported alone (conv with its BN folded into a bias, then its activation;
``dynamo=False``, which gives the same graph 10-50x faster) and timed in an ORT session with fixed threads:
warm-up, then the median of N runs. Whole models are timed the same way. Predicting: scale x (sum of the
layers' medians) + a + b x layers, fitted on whole-model measurements (``measured.MeasuredModel``).
"""

from __future__ import annotations

import io
import time
import warnings

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


class CpuOrtModel(MeasuredModel):
    name = "cpu-ort"
    runtime = "onnxruntime"

    def __init__(self, *, precision: str = "fp32", **kwargs):
        if precision != "fp32":
            raise LatencyError("cpu-ort-int8: int8 lookup tables are not implemented yet; use cpu-ort (fp32)")
        super().__init__(precision=precision, **kwargs)

    def runtime_version(self) -> str:
        import onnxruntime as ort

        return ort.__version__

    def time_module(self, module, inputs, runs):
        return time_onnx(to_onnx(module, inputs), inputs, self.threads, runs)
