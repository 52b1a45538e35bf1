"""``cpu-ort``: CPU latency measured with ONNX Runtime, predicted from a per-layer lookup table.

Each distinct layer is exported alone (conv with its BN folded into a bias, then its activation;
``dynamo=False``, which gives the same graph 10-50x faster) and timed in an ORT session with fixed threads:
warm-up, then the median of N runs. Whole models are timed the same way. Predicting: scale x (sum of the
layers' medians) + a + b x layers, fitted on whole-model measurements (``measured.MeasuredModel``).
"""

from __future__ import annotations

import torch

from ..export.onnx import ort_session, quantize_int8, to_onnx
from .base import LatencyError
from .measured import MeasuredModel, repeat


def time_onnx(model: bytes, inputs: tuple[torch.Tensor, ...], threads: int, runs: int, warmup: int = 3) -> list[float]:
    session = ort_session(model, threads, layout_rewrite=False)
    feed = {f"in{i}": t.numpy() for i, t in enumerate(inputs)}
    for _ in range(warmup):
        session.run(None, feed)
    return repeat(lambda: session.run(None, feed), runs)


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
            # ranges from a few random draws: the timing does not depend on them
            gen = torch.Generator().manual_seed(0)
            model = quantize_int8(model, [tuple(torch.randn(t.shape, generator=gen) for t in inputs)
                                          for _ in range(4)])
        return time_onnx(model, inputs, self.threads, runs)
