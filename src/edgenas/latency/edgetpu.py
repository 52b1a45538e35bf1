"""``edgetpu``: an Edge-TPU-like int8 accelerator, a 64x64 weight-stationary systolic array.

latency = fixed + sum over conv/linear layers of (cycles x ms_per_mcycle / 1e6 + layer_overhead + off-chip),
with compute cycles from SCALE-Sim (``scalesim_cycles``) and the time parameters fitted to Google's published
Pixel 6 Edge TPU latencies (``calibrate``).

Layers off the array (sums, SE scaling, pooling, resizes, concatenation, the one-hot argmax) run on the vector
path: their cycles are the larger of the bytes they move through on-chip memory at ``vector_bytes_per_cycle``
and their lane operations at one per array column per cycle, at the same clock; tensors beyond the on-chip
memory stream from DRAM like a conv's. A plain ARG_MAX is not an Edge TPU op (Coral's supported-operations
list, coral.ai/docs/edgetpu/models-intro), so it runs on the CPU: its input crosses off chip and the CPU scans
it at ``cpu_elems_per_s``. These are hardware assumptions, not fitted to any segmentation latency.

Depthwise convs are the crux (``docs/latency.md``). SCALE-Sim maps a depthwise layer one channel at a time
(one of the array's 64 columns and k*k of its rows busy): the slow bound. A packed mapping puts 64 channels on
the array's diagonal (a block-diagonal k*k*64 x 64 filter matrix, simulated by SCALE-Sim as such): the fast
bound. ``dw_packing`` interpolates between them. The published classification latencies cannot identify it
(reference latency-calibration.md: depthwise and dense work grow together), so it is a hardware assumption,
set where the model reproduces Google's block-level finding (fused-IBN faster than IBN at early narrow
high-resolution layers, IBN faster late) and reported with its sensitivity.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ..spec import Layer, spec_layers
from .base import LatencyReport, LayerTime
from .scalesim_cycles import ConvShape, CycleCache


@dataclass(frozen=True)
class EdgeTPUParams:
    ms_per_mcycle: float  # fitted: 1 / effective clock in GHz
    layer_overhead_ms: float  # fitted: fixed cost per conv/linear layer (dispatch, pipeline fill)
    fixed_ms: float  # fitted: per-inference cost (invocation, input/output transfer)
    dw_packing: float = 0.9  # hardware assumption: 0 = per-channel mapping, 1 = 64 channels per pass
    sram_mib: float = 8.0  # on-chip memory (Coral's Edge TPU has 8 MB; Pixel 6's is not published)
    offchip_gbps: float = 12.8  # bandwidth for what does not fit on chip (LPDDR5 share, an assumption)
    # Assumptions for layers off the array: on-chip memory feeds one int8 per array column per cycle, and a
    # CPU fallback scans one int8 per cycle of Pixel 6's 2.8 GHz Cortex-X1 (TFLite's reference ARG_MAX).
    vector_bytes_per_cycle: float = 64.0
    cpu_elems_per_s: float = 2.8e9


# Fitted by `edgenas latency calibrate --target edgetpu` to the ten published Pixel 6 latencies (reference
# 1.5) with dw_packing 0.9: Google's block-level finding holds only for packing >= 0.8 (below, a late IBN is
# slower than a fused one), and 0.9 is the middle of [0.8, 1]. docs/latency.md has the sensitivity table.
DEFAULT_PARAMS = EdgeTPUParams(ms_per_mcycle=0.6693135897361038, layer_overhead_ms=0.0, fixed_ms=0.13740879148312488)


@dataclass(frozen=True)
class LayerCycles:
    dense: int  # cycles of the non-depthwise part
    dw_per_channel: int
    dw_packed: int

    def total(self, packing: float) -> float:
        return self.dense + self.dw_packed + (1.0 - packing) * (self.dw_per_channel - self.dw_packed)


def layer_cycles(layer: Layer, cache: CycleCache) -> LayerCycles:
    """SCALE-Sim cycles of one conv or linear layer (grouped convs: one group simulated, times groups)."""
    if layer.op == "linear":
        return LayerCycles(cache.cycles(ConvShape(1, 1, 1, layer.in_channels, layer.out_channels, 1)), 0, 0)
    h, w = layer.in_size
    k, s = layer.kernel_size, layer.stride
    if layer.is_depthwise:
        c, cols = layer.in_channels, cache.cols
        one = cache.cycles(ConvShape(h, w, k, 1, 1, s))
        block = min(c, cols)
        packed = math.ceil(c / cols) * cache.cycles(ConvShape(h, w, k, block, block, s))
        return LayerCycles(0, c * one, packed)
    g = layer.groups
    shape = ConvShape(h, w, k, layer.in_channels // g, layer.out_channels // g, s)
    return LayerCycles(g * cache.cycles(shape), 0, 0)


ARRAY_OPS = ("conv", "linear")
VECTOR_OPS = ("add", "mul", "pool", "avg_pool", "max_pool", "resize", "concat", "argmax", "crop")


def _elems(layer: Layer) -> tuple[int, int]:
    """int8 elements in (all inputs together) and out."""
    n = layer.num_inputs if layer.op == "add" else 1  # a concat's in_channels already sum its inputs
    return (n * layer.in_channels * layer.in_size[0] * layer.in_size[1],
            layer.out_channels * layer.out_size[0] * layer.out_size[1])


def offchip_bytes(layer: Layer, sram_bytes: float) -> float:
    """int8 bytes of weights and activations beyond on-chip memory, which stream from DRAM."""
    return max(0.0, layer.params + sum(_elems(layer)) - sram_bytes)


def vector_cycles(layer: Layer, p: EdgeTPUParams, lanes: int) -> float:
    """Cycles of a layer off the array: max(bytes through on-chip memory, lane operations / lanes)."""
    inp, out = _elems(layer)
    ops = {"add": inp * (2 if layer.mode else 1), "mul": out, "pool": inp, "concat": 0,
           "avg_pool": out * layer.kernel_size**2, "max_pool": out * layer.kernel_size**2,
           "resize": out * (4 if layer.mode == "bilinear" else 1),
           "argmax": 5 * inp, "crop": 0}[layer.op]  # one-hot argmax: max, sub, min, mul, max over the classes
    moved = 2 * out if layer.op == "crop" else inp + out  # a crop reads only the window it keeps
    if layer.op == "argmax":
        moved = 8 * inp + out  # the one-hot form reads the logits twice and writes 3 class-wide temporaries
    return max(moved / p.vector_bytes_per_cycle, ops / lanes)


class EdgeTPUModel:
    name = "edgetpu"
    unit = "ms"

    def __init__(self, params: EdgeTPUParams = DEFAULT_PARAMS, cache: CycleCache | None = None):
        self.params = params
        self.cache = cache or CycleCache()

    def layer_terms(self, arch) -> list[tuple[Layer, LayerCycles, float]]:
        """(layer, cycles, off-chip bytes) for every layer the accelerator runs, at the deployment size: the
        array's convs (dense cycles) and the vector path's layers (counted as dense cycles too)."""
        sram, out = self.params.sram_mib * 2**20, []
        for x in spec_layers(arch):
            if x.op in ARRAY_OPS:
                out.append((x, layer_cycles(x, self.cache), offchip_bytes(x, sram)))
            elif x.op in VECTOR_OPS and not self.on_cpu(x):
                out.append((x, LayerCycles(round(vector_cycles(x, self.params, self.cache.cols)), 0, 0),
                            offchip_bytes(x, sram)))
        return out

    @staticmethod
    def on_cpu(layer: Layer) -> bool:
        return layer.op == "argmax" and layer.mode != "onehot"

    def cpu_fallback_ms(self, arch) -> list[tuple[Layer, float]]:
        """Layers the Edge TPU cannot run: their input crosses to the CPU, which scans it."""
        p, out = self.params, []
        for x in spec_layers(arch):
            if self.on_cpu(x):
                inp = _elems(x)[0]
                out.append((x, inp / p.cpu_elems_per_s * 1e3 + inp / (p.offchip_gbps * 1e6)))
        return out

    def cost_ms(self, cycles: LayerCycles, offchip: float, array: bool = True) -> float:
        """ms of one layer: its cycles at the fitted clock, the per-layer overhead (array layers), and the
        off-chip bytes at the assumed bandwidth. The one place cycles become milliseconds."""
        p = self.params
        return (cycles.total(p.dw_packing) * p.ms_per_mcycle / 1e6 + p.layer_overhead_ms * array
                + offchip / (p.offchip_gbps * 1e6))

    def layer_ms(self, layer: Layer) -> float:
        return self.cost_ms(layer_cycles(layer, self.cache), offchip_bytes(layer, self.params.sram_mib * 2**20))

    def predict(self, arch) -> LatencyReport:
        p = self.params
        layers, terms = [], self.layer_terms(arch)
        for layer, cyc, offchip in terms:
            array = layer.op in ARRAY_OPS
            layers.append(LayerTime(layer.path, layer.op, self.cost_ms(cyc, offchip, array),
                                    "scalesim" if array else "vector"))
        fallback = self.cpu_fallback_ms(arch)
        layers += [LayerTime(x.path, x.op, ms, "cpu-fallback") for x, ms in fallback]
        layers.append(LayerTime("fixed", "invoke", p.fixed_ms, "fitted"))
        self.cache.save()
        notes = [f"depthwise convs at dw_packing={p.dw_packing:g} (0: SCALE-Sim per-channel, 1: 64 channels/pass)",
                 f"layers off the array charged for the bytes they move at {p.vector_bytes_per_cycle:g} per cycle (an "
                 "assumption)"]
        if fallback:
            notes.append(f"{len(fallback)} layer(s) the Edge TPU cannot run (plain argmax) charged as a CPU "
                         f"fallback at {p.cpu_elems_per_s / 1e9:g} G elements/s (an assumption)")
        if any(b for _, _, b in terms):
            notes.append("some tensors exceed the assumed on-chip memory: their bytes are charged at "
                         f"{p.offchip_gbps:g} GB/s (an assumption, not fitted)")
        return LatencyReport(self.name, arch.name, arch.input_size, sum(x.value for x in layers), self.unit, "int8",
                             layers, {"array": [self.cache.rows, self.cache.cols], "params": asdict(p)}, notes)


class _Recorder(CycleCache):
    """A cache that only notes which shapes it is asked for."""

    def __init__(self, rows: int, cols: int):
        super().__init__(None, rows, cols, use_bundled=False)
        self.shapes: dict[str, ConvShape] = {}

    def cycles(self, shape: ConvShape) -> int:
        self.shapes.setdefault(shape.key(self.rows, self.cols), shape)
        return 1


def warm(cache: CycleCache, specs, progress=None) -> tuple[int, int]:
    """Simulate, into ``cache``, every systolic-array shape the conv layers of ``specs`` need and ``cache``
    does not hold yet. Returns (distinct shapes, shapes simulated now); ``cache.save()`` keeps them."""
    recorder = _Recorder(cache.rows, cache.cols)
    for spec in specs:
        for layer in spec_layers(spec):
            if layer.op == "conv":
                layer_cycles(layer, recorder)
    before = cache.simulated
    for n, shape in enumerate(recorder.shapes.values()):
        cache.cycles(shape)
        if progress and n % 50 == 49:
            progress(n + 1, len(recorder.shapes))
    return len(recorder.shapes), cache.simulated - before
