"""``cpu-ort``: CPU latency measured with ONNX Runtime, predicted from a per-layer lookup table.

Measuring: each distinct layer is exported alone (conv with its BN folded into a bias, then its activation;
``dynamo=False``, which gives the same graph 10-50x faster) and timed in an ORT session with fixed threads:
warm-up, then the median of N runs. Whole models are timed the same way. Predicting: the sum of the layers'
medians plus an overhead a + b x layers fitted on whole-model measurements. Missing entries are measured the
first time a prediction needs them, but only on the machine the table belongs to.
"""

from __future__ import annotations

import io
import statistics
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..env import cpu_model
from ..spec import Arch, Layer, arch_layers
from .base import LatencyError, LatencyReport, LayerTime
from .lut import Fingerprint, Lut, LutEntry, Overhead, layer_key

MEASURED_OPS = ("conv", "linear", "pool", "add", "mul")


def _act(name: str) -> nn.Module:
    return {"relu": nn.ReLU(), "relu6": nn.ReLU6(), "hswish": nn.Hardswish(), "hsigmoid": nn.Hardsigmoid(),
            "none": nn.Identity()}[name]


class _Binary(nn.Module):
    def __init__(self, op: str):
        super().__init__()
        self.op = op

    def forward(self, x, y):
        return x + y if self.op == "add" else x * y


class _Identity(nn.Module):
    def forward(self, *xs):
        return tuple(x + 0 for x in xs)  # a real node, so the graph is not empty


def layer_module(layer: Layer) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """A stand-alone module and inputs that compute ``layer`` as the deployed (BN-folded) graph does."""
    c, (h, w) = layer.in_channels, layer.in_size
    x = torch.randn(1, c, h, w)
    if layer.op == "conv":
        pad = (layer.kernel_size - 1) // 2 * layer.dilation
        conv = nn.Conv2d(c, layer.out_channels, layer.kernel_size, layer.stride, pad, layer.dilation, layer.groups,
                         bias=layer.bias or layer.norm)
        return nn.Sequential(conv, _act(layer.act)), (x,)
    if layer.op == "linear":
        return nn.Sequential(nn.Linear(c, layer.out_channels), _act(layer.act)), (torch.randn(1, c),)
    if layer.op == "pool":
        return nn.AdaptiveAvgPool2d(1), (x,)
    if layer.op in ("add", "mul"):
        other = torch.randn(1, c, h, w) if layer.op == "add" else torch.rand(1, c, 1, 1)
        return _Binary(layer.op), (x, other)
    raise LatencyError(f"{layer.path}: cpu-ort cannot measure a {layer.op!r} layer")


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


def this_machine(threads: int, precision: str) -> Fingerprint:
    import os

    import onnxruntime as ort

    return Fingerprint(cpu=cpu_model(), cores=os.cpu_count() or 1, runtime="onnxruntime",
                       runtime_version=ort.__version__, threads=threads, precision=precision)


class CpuOrtModel:
    name = "cpu-ort"
    unit = "ms"

    def __init__(self, *, precision: str = "fp32", threads: int = 1, runs: int = 30,
                 lut_path: str | Path | None = None, lut: Lut | None = None, device: str = "this-cpu"):
        if precision != "fp32":
            raise LatencyError("cpu-ort-int8: int8 lookup tables are not implemented yet; use cpu-ort (fp32)")
        self.precision, self.threads, self.runs = precision, threads, runs
        self.lut_path = Path(lut_path) if lut_path else None
        self._lut, self.device = lut, device
        self.measured = 0

    @property
    def lut(self) -> Lut:
        if self._lut is None:
            if self.lut_path and self.lut_path.is_file():
                self._lut = Lut.load(self.lut_path)
            else:
                self._lut = Lut(target=self.name, device=self.device, fingerprint=this_machine(self.threads,
                                self.precision), date=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        return self._lut

    def _can_measure(self, layer: Layer) -> None:
        diff = self.lut.fingerprint.differences(this_machine(self.threads, self.precision))
        if diff:
            raise LatencyError(f"{layer.path}: no entry in the lookup table of {self.lut.device!r} and this machine "
                               f"differs from it ({'; '.join(diff)}), so it cannot be measured here")

    def entry(self, layer: Layer) -> LutEntry:
        key = layer_key(layer, self.precision)
        if key not in self.lut.entries:
            self._can_measure(layer)
            module, inputs = layer_module(layer)
            # A session call costs time of its own (input binding, output allocation) that a whole model pays
            # once, not per layer: time the same inputs through an identity graph and take it off.
            times = np.array(time_onnx(to_onnx(module, inputs), inputs, self.threads, self.runs))
            empty = statistics.median(time_onnx(to_onnx(_Identity(), inputs), inputs, self.threads, self.runs))
            q = np.percentile(times - empty, [10, 50, 90])
            self.lut.entries[key] = LutEntry(median_ms=max(float(q[1]), 0.0), p10_ms=float(q[0]), p90_ms=float(q[2]),
                                             runs=len(times))
            self.measured += 1
        return self.lut.entries[key]

    def layers_of(self, arch: Arch) -> list[Layer]:
        return [x for x in arch_layers(arch) if x.op in MEASURED_OPS]

    def predict(self, arch: Arch) -> LatencyReport:
        layers = self.layers_of(arch)
        times = [LayerTime(x.path, x.op, self.entry(x).median_ms, "lut") for x in layers]
        notes = []
        overhead = self.lut.overhead
        if overhead is None:
            notes.append("overhead not fitted (edgenas lut build fits it): the total is the sum of the layers")
        else:
            times.append(LayerTime("overhead", "fitted", overhead.a_ms + overhead.b_ms_per_layer * len(layers),
                                   "fitted overhead"))
        self.save()
        return LatencyReport(self.name, arch.name, arch.input_size, sum(t.value for t in times), self.unit,
                             self.precision, times, self.lut.fingerprint.model_dump(), notes)

    def measure(self, arch: Arch, runs: int | None = None) -> float:
        """Median end-to-end ms of the whole model in ORT (eval mode, batch 1)."""
        from ..nn import build_model

        torch.manual_seed(0)
        model = build_model(arch).eval()
        x = torch.randn(1, arch.in_channels, arch.input_size, arch.input_size)
        return statistics.median(time_onnx(to_onnx(model, (x,)), (x,), self.threads, runs or self.runs))

    def fit_overhead(self, archs: list[Arch]) -> Overhead:
        """Least squares of (measured - sum of entries) on [1, number of layers] over ``archs``."""
        rows, residuals = [], []
        for arch in archs:
            layers = self.layers_of(arch)
            residuals.append(self.measure(arch) - sum(self.entry(x).median_ms for x in layers))
            rows.append([1.0, len(layers)])
        (a, b), *_ = np.linalg.lstsq(np.array(rows), np.array(residuals), rcond=None)
        self.lut.overhead = Overhead(a_ms=float(a), b_ms_per_layer=float(b), fitted_on=len(archs))
        self.save()
        return self.lut.overhead

    def save(self) -> None:
        if self.lut_path is not None and self._lut is not None:
            self._lut.save(self.lut_path)
