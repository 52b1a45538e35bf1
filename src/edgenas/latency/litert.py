"""``cpu-litert``: CPU latency measured with LiteRT and its XNNPACK delegate, the runtime phones run.

Layers and models are converted with ``litert-torch`` with channel-last inputs and outputs (so a one-layer
graph carries no layout transposes a whole model would not have) and timed with ``ai-edge-litert``'s
interpreter at fixed threads. The lookup-table logic is shared with ``cpu-ort`` (``measured``). Needs the
``litert`` extra.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from ..export.litert import to_tflite
from .base import LatencyError
from .measured import MeasuredModel, repeat


def time_tflite(path: str | Path, threads: int, runs: int, warmup: int = 3) -> list[float]:
    import numpy as np
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

    def runtime_version(self) -> str:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("ai-edge-litert")
        except PackageNotFoundError:
            raise LatencyError("cpu-litert needs the litert extra: pip install 'edgenas[litert]'") from None

    def time_module(self, module, inputs, runs):
        with tempfile.TemporaryDirectory() as tmp:
            return time_tflite(to_tflite(module, inputs, Path(tmp) / "m.tflite"), self.threads, runs)
