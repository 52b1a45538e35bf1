"""``cpu-litert``: CPU latency measured with LiteRT and its XNNPACK delegate, the runtime phones run.

Layers and models are converted with ``litert-torch`` with channel-last inputs and outputs (so a one-layer
graph carries no layout transposes a whole model would not have) and timed with ``ai-edge-litert``'s
interpreter at fixed threads. The lookup-table logic is shared with ``cpu-ort`` (``measured``). Needs the
``litert`` extra.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from .base import LatencyError
from .measured import MeasuredModel


@contextlib.contextmanager
def _quiet():
    """litert-torch logs every conversion step; keep the user's terminal for our own progress."""
    logging.getLogger("litert_torch").setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def to_tflite(module: nn.Module, inputs: tuple[torch.Tensor, ...], path: str | Path) -> Path:
    """Convert with channel-last I/O: 4-D inputs and the output are NHWC in the .tflite."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import litert_torch
    except ImportError:
        raise LatencyError("cpu-litert needs the litert extra: pip install 'edgenas[litert]'") from None
    four_d = [i for i, t in enumerate(inputs) if t.dim() == 4]
    with torch.no_grad():
        out = module.eval()(*inputs)
    out_4d = (out[0] if isinstance(out, tuple) else out).dim() == 4
    wrapped = litert_torch.to_channel_last_io(module, args=four_d, outputs=[0] if out_4d else []).eval()
    nhwc = tuple(t.permute(0, 2, 3, 1).contiguous() if t.dim() == 4 else t for t in inputs)
    with _quiet():
        edge = litert_torch.convert(wrapped, nhwc)
        edge.export(str(path))
    return Path(path)


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
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        interpreter.invoke()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


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
