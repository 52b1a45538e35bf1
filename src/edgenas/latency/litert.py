"""``cpu-litert`` and ``cpu-litert-int8``: CPU latency measured with LiteRT and its XNNPACK delegate, the
runtime phones run, in float or in 8-bit (static int8, per-channel weights: what phones deploy).

Layers and models are converted with ``litert-torch`` with channel-last inputs and outputs (so a one-layer
graph carries no layout transposes a whole model would not have) and timed with ``ai-edge-litert``'s
interpreter at fixed threads. An int8 layer is quantised with ranges from a few random draws (timing does not
depend on them) through the same PT2E path ``edgenas export --format tflite-int8`` uses. The lookup-table logic is shared with ``cpu-ort`` (``measured``). Needs the
``litert`` extra.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from ..export.litert import to_tflite, to_tflite_int8
from .base import LatencyError
from .measured import MeasuredModel, repeat


def time_tflite(path: str | Path, threads: int, runs: int, warmup: int = 3) -> list[float]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    rng = np.random.default_rng(0)
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], rng.standard_normal(detail["shape"]).astype(detail["dtype"]))
    for _ in range(warmup):
        interpreter.invoke()
    return repeat(interpreter.invoke, runs)


class CpuLitertModel(MeasuredModel):
    name = "cpu-litert"
    runtime = "ai-edge-litert (XNNPACK)"

    def __init__(self, *, precision: str = "fp32", **kwargs):
        if precision not in ("fp32", "int8"):
            raise LatencyError(f"cpu-litert measures fp32 or int8, not {precision!r}")
        super().__init__(precision=precision, **kwargs)
        self.name = "cpu-litert-int8" if precision == "int8" else "cpu-litert"

    def runtime_version(self) -> str:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("ai-edge-litert")
        except PackageNotFoundError:
            raise LatencyError("cpu-litert needs the litert extra: pip install 'edgenas[litert]'") from None

    def time_module(self, module, inputs, runs):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "m.tflite"
            if self.precision == "int8":
                gen = torch.Generator().manual_seed(0)
                draws = [tuple(torch.randn(t.shape, generator=gen) for t in inputs) for _ in range(4)]
                to_tflite_int8(module, inputs, draws, path)
            else:
                to_tflite(module, inputs, path)
            return time_tflite(path, self.threads, runs)
