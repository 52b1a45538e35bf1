"""What every measured target shares: a lookup table of per-layer medians, filled lazily on the machine it
belongs to, whole-model measurement, and the fitted correction from layer sums to end-to-end latency."""

from __future__ import annotations

import os
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..env import cpu_model
from ..nn import build_model
from ..nn.layers import make_act
from ..nn.network import Fuse, Resize, SamePool, Serving, onehot_argmax
from ..rng import seeded
from ..spec import Arch, Layer, spec_layers
from .base import LatencyError, LatencyReport, LayerTime
from .lut import Fingerprint, Lut, LutEntry, Overhead, layer_key

MEASURED_OPS = ("conv", "linear", "pool", "add", "mul", "avg_pool", "max_pool", "resize", "concat", "argmax",
                "crop")
LAYER_CLASSES = ("conv1x1", "conv", "dwconv", "gconv", "elementwise", "other")
# Below this many whole models per fitted number, a per-kind fit falls back to one scale for all layers.
MODELS_PER_PARAMETER = 3


def layer_class(layer: Layer) -> str:
    """The kind of layer a correction scale applies to: kernels a runtime implements differently."""
    if layer.op == "conv":
        if layer.groups == 1:
            return "conv1x1" if layer.kernel_size == 1 else "conv"
        return "dwconv" if layer.groups == layer.in_channels == layer.out_channels else "gconv"
    return "elementwise" if layer.op in ("add", "mul") else "other"


class _Binary(nn.Module):
    def __init__(self, op: str, act: str = "none"):
        super().__init__()
        self.op, self.act = op, make_act(act)

    def forward(self, x, y):
        return self.act(x + y if self.op == "add" else x * y)


class Passthrough(nn.Module):
    """The cheapest real graph over the same inputs: what a session call costs without the layer."""

    def forward(self, *xs):
        outs = tuple(x + 0 for x in xs)  # every input used, so exporters keep them all
        return outs[0] if len(outs) == 1 else outs


def layer_module(layer: Layer, seed: int = 0) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """A stand-alone module and inputs that compute ``layer`` as the deployed (BN-folded) graph does; weights
    and inputs drawn from ``seed`` without touching the caller's random stream."""
    with seeded(seed):
        return _layer_module(layer)


def _layer_module(layer: Layer) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    c, (h, w) = layer.in_channels, layer.in_size
    x = torch.randn(1, c, h, w)
    if layer.op == "conv":
        pad = (layer.kernel_size - 1) // 2 * layer.dilation
        conv = nn.Conv2d(c, layer.out_channels, layer.kernel_size, layer.stride, pad, layer.dilation, layer.groups,
                         bias=layer.bias or layer.norm)
        return nn.Sequential(conv, make_act(layer.act)).eval(), (x,)
    if layer.op == "linear":
        return nn.Sequential(nn.Linear(c, layer.out_channels), make_act(layer.act)).eval(), (torch.randn(1, c),)
    if layer.op == "pool":
        return nn.AdaptiveAvgPool2d(1), (x,)
    if layer.op == "mul" or (layer.op == "add" and layer.num_inputs <= 2 and not layer.mode):
        other = torch.randn(1, c, h, w) if layer.op == "add" else torch.rand(1, c, 1, 1)
        return _Binary(layer.op, layer.act), (x, other)
    return _graph_layer(layer, c, h, w)


def _graph_layer(layer: Layer, c: int, h: int, w: int):
    """The layers heads add (N-input and weighted sums, pooling windows, resizes, concat, argmax), built
    with the same modules the network uses, so the runtime sees the same ops."""
    if layer.op == "add":
        return _Inputs(Fuse(layer.mode or "sum", layer.num_inputs, c), layer.act), tuple(
            torch.randn(1, c, h, w) for _ in range(layer.num_inputs))
    if layer.op == "concat":
        widths = [c // layer.num_inputs + (i < c % layer.num_inputs) for i in range(layer.num_inputs)]
        return _Inputs(Fuse("concat", layer.num_inputs, c)), tuple(torch.randn(1, k, h, w) for k in widths)
    x = torch.randn(1, c, h, w)
    if layer.op in ("avg_pool", "max_pool"):
        return SamePool(layer.op.removesuffix("_pool"), layer.kernel_size, layer.stride), (x,)
    if layer.op == "resize":
        return Resize(layer.out_size, layer.mode), (x,)
    if layer.op == "argmax":
        return (_OneHotArgmax() if layer.mode == "onehot" else _Argmax()), (x,)
    if layer.op == "crop":
        return _Crop(layer.out_size), (x,)
    raise LatencyError(f"{layer.path}: cannot measure a {layer.op!r} layer")


class _Inputs(nn.Module):
    """A module over a list of tensors, called with them as separate inputs (what exporters want)."""

    def __init__(self, inner: nn.Module, act: str = "none"):
        super().__init__()
        self.inner, self.act = inner, make_act(act)

    def forward(self, *xs):
        return self.act(self.inner(list(xs)))


class _Crop(nn.Module):
    def __init__(self, size: tuple[int, int]):
        super().__init__()
        self.size = size

    def forward(self, x):
        return x[..., :self.size[0], :self.size[1]]


class _Argmax(nn.Module):
    def forward(self, x):
        return x.argmax(dim=1, keepdim=True)


class _OneHotArgmax(nn.Module):
    def forward(self, x):
        return onehot_argmax(x)


def arch_module(arch: Arch, seed: int = 0) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """The whole model (eval mode) and one input, drawn from ``seed`` as ``layer_module``'s are."""
    with seeded(seed):
        model = build_model(arch).eval()
        if getattr(arch, "tail", None) is not None:  # a network with a serving tail is timed as it is served
            model = Serving(model).eval()
        return model, (torch.randn(1, arch.in_channels, arch.input_size, arch.input_size),)


def repeat(call, runs: int, min_total_ms: float = 50.0, max_runs: int = 5000) -> list[float]:
    """Milliseconds of ``call``, at least ``runs`` times and until ``min_total_ms`` have passed (bounded by
    ``max_runs``): microsecond layers get thousands of samples, so their medians are not timer noise."""
    times: list[float] = []
    while len(times) < runs or (sum(times) < min_total_ms and len(times) < max_runs):
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def fit_correction(rows: list[dict[str, float]], layers: list[int], measured: list[float],
                   per_kind: bool = False) -> Overhead:
    """End-to-end ms = scale x (sum of entries) + a + b x layers, by least squares weighted by 1 / measured
    (relative error, the figure the accuracy check judges, so small models count as much as large ones).
    ``rows`` are the entries' sums per layer kind. ``per_kind`` fits one scale per kind present instead
    (bounded to 0.25-4), given ``MODELS_PER_PARAMETER`` models per fitted number; the cpu-litert benchmark
    found it worse than one scale on held-out architectures (docs/latency.md), so it is not the default."""
    from scipy.optimize import lsq_linear

    y = np.array(measured, dtype=float)
    common = np.array([[sum(r.values()), 1.0, n] for r, n in zip(rows, layers)])
    (scale, a, b), *_ = np.linalg.lstsq(common / y[:, None], np.ones_like(y), rcond=None)
    overhead = Overhead(scale=float(scale), a_ms=float(a), b_ms_per_layer=float(b), fitted_on=len(y))
    kinds = [k for k in LAYER_CLASSES if any(r.get(k, 0.0) > 0 for r in rows)]
    if not per_kind or len(kinds) < 2 or len(y) < MODELS_PER_PARAMETER * (len(kinds) + 2):
        return overhead
    x = np.array([[r.get(k, 0.0) for k in kinds] + [1.0, n] for r, n in zip(rows, layers)]) / y[:, None]
    lo, hi = [0.25] * len(kinds) + [-np.inf] * 2, [4.0] * len(kinds) + [np.inf] * 2
    fit = lsq_linear(x, np.ones_like(y), bounds=(lo, hi))
    *scales, a, b = fit.x
    return overhead.model_copy(update={"class_scales": {k: float(v) for k, v in zip(kinds, scales)},
                                       "a_ms": float(a), "b_ms_per_layer": float(b)})


class MeasuredModel:
    """Subclasses give ``runtime``, ``runtime_version()`` and ``time_module(module, inputs) -> [ms, ...]``."""

    name = "measured"
    unit = "ms"
    runtime = ""

    def __init__(self, *, precision: str = "fp32", threads: int = 1, runs: int = 30,
                 lut_path: str | Path | None = None, lut: Lut | None = None, device: str = "this-cpu"):
        self.precision, self.threads, self.runs = precision, threads, runs
        self.lut_path = Path(lut_path) if lut_path else None
        self._lut, self.device = lut, device
        self.measured = 0
        self._passthrough_ms: dict[tuple, float] = {}  # per input signature, for this process

    def runtime_version(self) -> str:
        raise NotImplementedError

    def time_module(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], runs: int) -> list[float]:
        raise NotImplementedError

    def this_machine(self) -> Fingerprint:
        return Fingerprint(cpu=cpu_model(), cores=os.cpu_count() or 1, runtime=self.runtime,
                           runtime_version=self.runtime_version(), threads=self.threads, precision=self.precision)

    @property
    def lut(self) -> Lut:
        if self._lut is None:
            if self.lut_path and self.lut_path.is_file():
                self._lut = Lut.load(self.lut_path)
                if self._lut.target != self.name:
                    raise LatencyError(f"{self.lut_path}: a {self._lut.target} table, not {self.name}")
            else:
                self._lut = Lut(target=self.name, device=self.device, fingerprint=self.this_machine(),
                                date=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        return self._lut

    def _check_machine(self, what: str) -> None:
        diff = self.lut.fingerprint.differences(self.this_machine())
        if diff:
            raise LatencyError(f"{what}: the lookup table belongs to {self.lut.device!r} and this machine differs "
                               f"({'; '.join(diff)}), so it cannot be measured here")

    def entry(self, layer: Layer) -> LutEntry:
        key = layer_key(layer, self.precision)
        if key not in self.lut.entries:
            self._check_machine(f"{layer.path} ({key}) has no entry")
            module, inputs = layer_module(layer)
            # A call costs time of its own (input binding, output allocation, layout changes at the edges) that
            # a whole model pays once, not per layer: time the same inputs through a passthrough and take it off.
            times = np.array(self.time_module(module, inputs, self.runs))
            signature = tuple(tuple(t.shape) for t in inputs)
            if signature not in self._passthrough_ms:
                self._passthrough_ms[signature] = statistics.median(self.time_module(Passthrough(), inputs, self.runs))
            empty = self._passthrough_ms[signature]
            q = np.percentile(times - empty, [10, 50, 90])
            self.lut.entries[key] = LutEntry(median_ms=max(float(q[1]), 0.0), p10_ms=float(q[0]),
                                             p90_ms=float(q[2]), runs=len(times))
            self.measured += 1
            # A killed build loses at most the layer in flight. Rewriting the whole table costs ~3 ms per
            # thousand entries against ~150 ms to time one (cpu-ort, 2 cores): a few percent at 3000 entries.
            self.save()
        return self.lut.entries[key]

    def layers_of(self, arch: Arch) -> list[Layer]:
        return [x for x in spec_layers(arch) if x.op in MEASURED_OPS]

    def by_class(self, layers: list[Layer]) -> dict[str, float]:
        """The entries' sum per layer kind (``layer_class``), measuring what the table lacks."""
        sums: dict[str, float] = {}
        for x in layers:
            sums[layer_class(x)] = sums.get(layer_class(x), 0.0) + self.entry(x).median_ms
        return sums

    def predict(self, arch: Arch) -> LatencyReport:
        layers = self.layers_of(arch)
        times = [LayerTime(x.path, x.op, self.entry(x).median_ms, "lut") for x in layers]
        notes, overhead = [], self.lut.overhead
        if overhead is None:
            notes.append("overhead not fitted (edgenas lut build fits it): the total is the sum of the layers")
        else:
            layer_sum = sum(t.value for t in times)
            times.append(LayerTime("overhead", "fitted", overhead.total(self.by_class(layers), len(layers))
                                   - layer_sum, "fitted overhead"))
        return LatencyReport(self.name, arch.name, arch.input_size, sum(t.value for t in times), self.unit,
                             self.precision, times, {"device": self.lut.device, **self.lut.fingerprint.model_dump()},
                             notes)

    def measure(self, arch: Arch, runs: int | None = None) -> float:
        """Median end-to-end ms of the whole model (eval mode, batch 1) on this machine."""
        self._check_machine(f"{arch.name or 'arch'} end to end")
        return statistics.median(self.time_module(*arch_module(arch), runs or self.runs))

    def fit_overhead(self, archs: list[Arch]) -> Overhead:
        """Fit the correction from layer sums to end-to-end ms (``fit_correction``) on whole-model
        measurements of ``archs``."""
        rows, layers, measured = [], [], []
        for arch in archs:
            measured.append(self.measure(arch))
            layers.append(len(self.layers_of(arch)))
            rows.append(self.by_class(self.layers_of(arch)))
        self.lut.overhead = fit_correction(rows, layers, measured)
        self.save()
        return self.lut.overhead

    def save(self) -> None:
        if self.lut_path is not None and self._lut is not None:
            self._lut.save(self.lut_path)
