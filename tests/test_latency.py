"""Latency models: SCALE-Sim cycles pinned, the calibrated accelerator, measured CPU tables and their errors."""

import json
import statistics
import subprocess
import sys
from dataclasses import astuple, replace

import numpy as np
import pytest
import torch

from edgenas.latency import LatencyError, get_latency_model
from edgenas.latency.calibrate import CALIBRATION_MODELS, calibrate, features, fit
from edgenas.latency.edgetpu import DEFAULT_PARAMS, EdgeTPUModel, EdgeTPUParams, layer_cycles
from edgenas.latency.lut import Lut, layer_key
from edgenas.latency.scalesim_cycles import ConvShape, CycleCache, simulate
from edgenas.models import get_arch
from edgenas.spec import IBN, Arch, Head, Layer, Preprocess, Stage, Stem, arch_layers, count, spec_layers


def tiny_arch(width: int = 16, kernel: int = 3) -> Arch:
    return Arch(name=f"tiny{width}k{kernel}", input_size=16, in_channels=1, stem=Stem(out_channels=8),
                stages=(Stage(out_channels=width, blocks=(IBN(expand_ratio=4, kernel_size=kernel, stride=2),
                                                          IBN(expand_ratio=2))),),
                head=Head(conv_channels=None, num_classes=4), preprocess=Preprocess(mean=(0.5,), std=(0.5,)))


# SCALE-Sim v3, 64x64 weight-stationary array, 'same' padding, 56x56 input.
PINNED_CYCLES = [((56, 56, 1, 24, 192, 1), 9_977), ((56, 56, 3, 24, 192, 1), 39_911), ((56, 56, 3, 1, 1, 1), 3_325),
                 ((112, 112, 3, 16, 128, 2), 19_955)]  # 3 x 2 folds of 56x56 outputs


@pytest.mark.parametrize("shape,cycles", PINNED_CYCLES)
def test_scalesim_cycles_are_pinned(shape, cycles):
    assert simulate(ConvShape(*shape)) == cycles


def test_depthwise_bounds_and_grouped_convs():
    cache = CycleCache()
    dw = Layer(path="dw", op="conv", in_channels=192, out_channels=192, in_size=(56, 56), out_size=(56, 56),
               kernel_size=3, groups=192, norm=True)
    cyc = layer_cycles(dw, cache)
    assert cyc.dw_per_channel == 192 * 3_325 == 638_400  # SCALE-Sim's per-channel mapping
    assert cyc.dw_packed == 3 * simulate(ConvShape(56, 56, 3, 64, 64, 1))  # 64 channels per pass
    gc = Layer(path="gc", op="conv", in_channels=48, out_channels=192, in_size=(28, 28), out_size=(28, 28),
               kernel_size=3, groups=3, norm=True)
    assert layer_cycles(gc, cache).dense == 3 * simulate(ConvShape(28, 28, 3, 16, 64, 1))


def test_cycle_cache_is_persistent_and_content_addressed(tmp_path):
    path = tmp_path / "cycles.json"
    first = EdgeTPUModel(cache=CycleCache(path, use_bundled=False))
    a = first.predict(tiny_arch()).total
    assert first.cache.simulated > 0 and path.is_file()
    second = EdgeTPUModel(cache=CycleCache(path, use_bundled=False))
    assert second.predict(tiny_arch()).total == a and second.cache.simulated == 0
    path.write_text("{not json")
    with pytest.raises(LatencyError, match="not a SCALE-Sim cycle cache"):
        EdgeTPUModel(cache=CycleCache(path)).predict(tiny_arch())


def test_edgetpu_report_is_per_layer_at_the_deployment_size():
    report = EdgeTPUModel().predict(get_arch("mobilenet_edgetpu_v2_tiny"))
    assert report.unit == "ms" and report.precision == "int8" and report.input_size == 224
    assert sum(x.value for x in report.layers) == pytest.approx(report.total)
    # conv/linear layers on the array, 13 residual adds and the global pool on the vector path, the fixed cost
    assert [x.source for x in report.layers].count("scalesim") == 54
    assert [x.op for x in report.layers if x.source == "vector"] == ["add"] * 13 + ["pool"]
    assert len(report.layers) == 54 + 14 + 1
    assert report.total == pytest.approx(0.729, abs=0.002)  # published 0.78 ms
    assert any("dw_packing" in n for n in report.notes)


def test_calibration_recovers_known_parameters_from_synthetic_data():
    model = EdgeTPUModel()
    truth = EdgeTPUParams(ms_per_mcycle=0.5, layer_overhead_ms=0.002, fixed_ms=0.1)
    x, offchip = features(model, [get_arch(n) for n in CALIBRATION_MODELS], truth.dw_packing)
    y = x @ np.array([0.5, 0.002, 0.1])
    got = fit(x, y, truth)
    assert (got.ms_per_mcycle, got.layer_overhead_ms, got.fixed_ms) == pytest.approx((0.5, 0.002, 0.1), rel=1e-6)
    assert not offchip.any()  # at 224 every int8 tensor fits the assumed 8 MiB on chip


def test_calibration_on_published_latencies_meets_the_bars_and_gives_the_defaults():
    result = calibrate(EdgeTPUModel())
    assert result.loo_mape <= 5.0 and result.kendall_tau >= 0.9 and result.finding_holds
    # DEFAULT_PARAMS are this fit's output copied into edgetpu.py, so every field must agree (approx on the
    # dataclass itself would be plain ==); rel 1e-9 leaves room for another BLAS's rounding in the NNLS solve.
    assert astuple(result.params) == pytest.approx(astuple(DEFAULT_PARAMS), rel=1e-9)
    assert result.params.layer_overhead_ms == 0.0  # NNLS leaves the per-layer term on its bound: no cost
    per_channel = calibrate(EdgeTPUModel(), dw_packing=0.0)
    assert not per_channel.finding_holds  # depthwise as SCALE-Sim maps it: IBN loses late too


def test_analytic_and_simulated_targets_load_without_torch():
    """The measured targets load by name when asked for; the rest of ``edgenas.latency`` (and the zoo it
    calibrates against) imports without torch, as spec/ and space/ do."""
    code = ("import sys, edgenas.latency, edgenas.latency.calibrate, edgenas.latency.check, edgenas.models; "
            "edgenas.latency.get_latency_model('edgetpu'); edgenas.latency.get_latency_model('macs'); "
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
    with pytest.raises(LatencyError, match="unknown latency target 'macs-int8'"):
        get_latency_model("macs-int8")  # only the measured targets have an int8 form


def test_macs_proxy_and_unknown_target():
    report = get_latency_model("macs").predict(get_arch("mobilenet_v2"))
    assert report.unit == "MMACs" and report.total == pytest.approx(300.774272)
    with pytest.raises(LatencyError, match="unknown latency target 'gpu'; known: macs, edgetpu, cpu-ort"):
        get_latency_model("gpu")


def _timed_calls(monkeypatch, model) -> list[tuple]:
    """Record (module, inputs, runs, times) of every call ``model`` makes to its runtime, still timing for real."""
    calls, real = [], model.time_module

    def spy(module, inputs, runs):
        times = real(module, inputs, runs)
        calls.append((module, inputs, runs, times))
        return times

    monkeypatch.setattr(model, "time_module", spy)
    return calls


def _assert_timed_whole_model(calls, arch: Arch, ms: float, runs: int) -> None:
    """``measure`` times the built model once (eval, batch 1, deployment size) and reports the median."""
    [(module, inputs, asked, times)] = calls
    assert [tuple(t.shape) for t in inputs] == [(1, arch.in_channels, arch.input_size, arch.input_size)]
    assert sum(p.numel() for p in module.parameters()) == count(arch).params and not module.training
    assert asked == runs and len(times) >= runs and ms == statistics.median(times) > 0


def test_cpu_ort_table_is_filled_lazily_and_round_trips(tmp_path, monkeypatch):
    model = get_latency_model("cpu-ort", cache_dir=tmp_path, runs=5)
    report = model.predict(tiny_arch())
    layers = model.layers_of(tiny_arch())
    keys = [layer_key(x, "fp32") for x in layers]
    assert model.measured == len(set(keys)) == len(model.lut.entries)  # one measurement per distinct layer
    # no overhead fitted yet: one line per layer, straight from the table, and their plain sum
    assert [(t.path, t.value) for t in report.layers] == [(x.path, model.lut.entries[k].median_ms)
                                                          for x, k in zip(layers, keys)]
    assert report.total == sum(model.lut.entries[k].median_ms for k in keys) > 0
    assert any("overhead not fitted" in note for note in report.notes)
    again = get_latency_model("cpu-ort", cache_dir=tmp_path, runs=5)
    assert again.predict(tiny_arch()).total == report.total and again.measured == 0
    assert again.lut.entries == model.lut.entries  # JSON keeps every float exactly
    overhead = again.fit_overhead([tiny_arch(w, k) for w in (8, 16, 24) for k in (3, 5)])
    assert overhead.fitted_on == 6
    fitted = again.predict(tiny_arch())  # the correction as documented: scale x sum + a + b x layers
    layer_sum = sum(again.lut.entries[k].median_ms for k in keys)
    assert fitted.total == pytest.approx(overhead.scale * layer_sum + overhead.a_ms
                                         + overhead.b_ms_per_layer * len(layers), rel=1e-12, abs=1e-12)
    calls = _timed_calls(monkeypatch, again)
    _assert_timed_whole_model(calls, tiny_arch(), again.measure(tiny_arch()), runs=5)
    lut = Lut.load(tmp_path / "lut-cpu-ort.json")
    assert lut.fingerprint.runtime == "onnxruntime" and lut.overhead == overhead
    assert all(e.p10_ms <= e.p90_ms for e in lut.entries.values())


def test_correction_fits_a_scale_per_layer_kind_when_asked_and_models_allow():
    from edgenas.latency.measured import MODELS_PER_PARAMETER, fit_correction

    rng = np.random.default_rng(0)
    truth = {"conv1x1": 1.3, "dwconv": 0.6, "elementwise": 2.0}
    rows = [{k: float(rng.uniform(0.1, 2.0)) for k in truth} for _ in range(MODELS_PER_PARAMETER * 5)]
    layers = [int(rng.integers(10, 60)) for _ in rows]
    measured = [sum(truth[k] * v for k, v in r.items()) + 0.05 + 0.002 * n for r, n in zip(rows, layers)]
    assert fit_correction(rows, layers, measured).class_scales == {}  # one scale unless asked
    fitted = fit_correction(rows, layers, measured, per_kind=True)
    assert fitted.class_scales == pytest.approx(truth, rel=1e-6) and fitted.fitted_on == len(rows)
    assert (fitted.a_ms, fitted.b_ms_per_layer) == pytest.approx((0.05, 0.002), rel=1e-6)
    assert fitted.total(rows[0], layers[0]) == pytest.approx(measured[0])
    few = fit_correction(rows[:MODELS_PER_PARAMETER * 5 - 1], layers[:-1], measured[:-1], per_kind=True)
    assert few.class_scales == {}  # 14 models for 5 numbers: one common scale instead
    assert few.total(rows[0], layers[0]) == pytest.approx(few.scale * sum(rows[0].values()) + few.a_ms
                                                          + few.b_ms_per_layer * layers[0])


def test_a_table_from_another_machine_is_used_but_never_extended(tmp_path):
    model = get_latency_model("cpu-ort", cache_dir=tmp_path, runs=3)
    first = model.predict(tiny_arch())
    path = tmp_path / "lut-cpu-ort.json"
    data = json.loads(path.read_text())
    data["fingerprint"]["cpu"] = "Some Phone CPU"
    path.write_text(json.dumps(data))
    other = get_latency_model("cpu-ort", cache_dir=tmp_path)
    here = other.predict(tiny_arch())  # every entry is there: fine anywhere, and nothing is measured
    assert here.total == first.total and other.measured == 0 and here.environment["cpu"] == "Some Phone CPU"
    with pytest.raises(LatencyError, match=r"has no entry: the lookup table belongs to 'this-cpu' and this machine "
                                           r"differs \(cpu 'Some Phone CPU'"):
        other.predict(tiny_arch(width=24))
    with pytest.raises(LatencyError, match="cannot be measured here"):
        other.measure(tiny_arch())


def test_bad_tables(tmp_path):
    bad = tmp_path / "lut.json"
    bad.write_text(json.dumps({"schema_version": 9}))
    with pytest.raises(LatencyError, match="LUT schema_version 9 is not supported"):
        Lut.load(bad)
    bad.write_text(json.dumps({"schema_version": 1, "target": "cpu-ort"}))
    with pytest.raises(LatencyError, match="lut.json: device: Field required"):
        Lut.load(bad)
    with pytest.raises(LatencyError, match="cannot read a lookup table"):
        Lut.load(tmp_path / "missing.json")


def test_check_reports_nn_meter_metrics(tmp_path):
    from edgenas.latency.check import CheckResult, check

    model = get_latency_model("cpu-ort", cache_dir=tmp_path, runs=5)
    archs = [tiny_arch(w) for w in (8, 16, 24)]
    result = check(model, archs, target="cpu-ort", space="tiny", seed=0,
                   fit_archs=[tiny_arch(w, 5) for w in (8, 16, 24, 32)])
    # the overhead is fitted on fit_archs first, then each arch is predicted with it and measured
    assert result.fit_samples == 4 and model.lut.overhead.fitted_on == 4
    assert result.predicted == [model.predict(a).total for a in archs]
    assert result.archs == [a.to_json(indent=None) for a in archs]
    assert len(result.measured) == 3 and all(m > 0 for m in result.measured)
    assert result.summary()["samples"] == 3

    # The metrics on figures worked by hand: errors +2%, +25%, -23.3%, +7%; one of six pairs swaps order.
    s = CheckResult("cpu-ort", "tiny", 0, predicted=[1.02, 2.5, 2.3, 4.28], measured=[1.0, 2.0, 3.0, 4.0]).summary()
    assert s["samples"] == 4 and s["within_10pct"] == 0.5 and s["within_5pct"] == 0.25
    assert s["rmse_ms"] == pytest.approx(((0.02**2 + 0.5**2 + 0.7**2 + 0.28**2) / 4) ** 0.5, rel=1e-12)
    assert s["rmspe"] == pytest.approx(((0.02**2 + 0.25**2 + (0.7 / 3) ** 2 + 0.07**2) / 4) ** 0.5, rel=1e-12)
    assert s["kendall_tau"] == pytest.approx((5 - 1) / 6, rel=1e-12)
    assert s["median_abs_error"] == pytest.approx((0.07 + 0.7 / 3) / 2, rel=1e-12)


def test_every_layer_op_can_be_measured():
    from edgenas.latency.measured import layer_module

    layers = arch_layers(get_arch("mobilenet_v3_small").replace(input_size=32))
    assert {x.op for x in layers} == {"conv", "linear", "pool", "add", "mul"}
    for layer in {x.op: x for x in layers}.values():
        module, inputs = layer_module(layer)
        out = module(*inputs)
        assert out.shape[1] == layer.out_channels


def test_detector_layers_are_measurable_as_they_compute():
    """SpaghettiNet's new kinds: crop, max-pool, nearest upsample, and the edge sum with its ReLU6."""
    from edgenas.latency.measured import layer_module

    layers = spec_layers(get_arch("spaghettinet_edgetpu_s").replace(input_size=64))
    kinds = {(x.op, x.act, x.mode): x for x in layers if x.op != "conv"}
    assert {("crop", "none", ""), ("max_pool", "none", ""), ("resize", "none", "nearest"),
            ("add", "relu6", "")} <= set(kinds)
    for layer in kinds.values():
        module, inputs = layer_module(layer)
        out = module(*inputs)
        assert tuple(out.shape[1:]) == (layer.out_channels, *layer.out_size)
        if layer.op == "add" and layer.act == "relu6":
            assert torch.equal(out, (inputs[0] + inputs[1]).clamp(0, 6))
        if layer.op == "crop":
            assert torch.equal(out, inputs[0][..., :layer.out_size[0], :layer.out_size[1]])


def test_cpu_ort_int8_quantizes_layers_and_models(tmp_path, monkeypatch):
    import onnx

    from edgenas.latency import cpu_ort

    timed, real = [], cpu_ort.time_onnx

    def spy(graph, inputs, threads, runs, **kwargs):
        times = real(graph, inputs, threads, runs, **kwargs)
        timed.append(({n.op_type for n in onnx.load_from_string(graph).graph.node}, times))
        return times

    monkeypatch.setattr(cpu_ort, "time_onnx", spy)
    model = get_latency_model("cpu-ort-int8", cache_dir=tmp_path, runs=5)
    report = model.predict(tiny_arch())
    assert report.precision == "int8" and report.environment["precision"] == "int8"
    assert set(model.lut.entries) == {layer_key(x, "int8") for x in model.layers_of(tiny_arch())}
    layer_graphs = len(timed)
    ms = model.measure(tiny_arch())
    assert len(timed) == layer_graphs + 1 and ms == statistics.median(timed[-1][1]) > 0
    # every graph timed, each layer, its passthrough and the whole model, runs quantized (QDQ) kernels
    assert all({"QuantizeLinear", "DequantizeLinear"} <= ops for ops, _ in timed), [ops for ops, _ in timed]
    assert "Conv" in timed[-1][0]
    assert Lut.load(tmp_path / "lut-cpu-ort-int8.json").fingerprint.precision == "int8"
    with pytest.raises(LatencyError, match="a cpu-ort-int8 table, not cpu-ort"):
        get_latency_model("cpu-ort", lut_path=tmp_path / "lut-cpu-ort-int8.json").predict(tiny_arch())


def test_unmappable_layers_and_approximations_are_announced():
    with pytest.raises(LatencyError, match="SCALE-Sim cannot map .* every dimension must be positive"):
        simulate(ConvShape(8, 8, 3, 0, 16, 1))
    arch = get_arch("mobilenet_edgetpu_v2_tiny").replace(input_size=64)
    assert not any("on-chip memory" in n for n in EdgeTPUModel().predict(arch).notes)
    small_sram = EdgeTPUParams(ms_per_mcycle=0.68, layer_overhead_ms=0.0, fixed_ms=0.14, sram_mib=0.05)
    report = EdgeTPUModel(small_sram).predict(arch)
    assert any("exceed the assumed on-chip memory" in n for n in report.notes)
    assert report.total > EdgeTPUModel(replace(small_sram, sram_mib=8.0)).predict(arch).total


def test_measuring_leaves_the_callers_random_stream_alone():
    """Layer and model modules are built from their own seed (repeatable weights and inputs) without
    seeding or drawing from the caller's generator."""
    from edgenas.latency.measured import arch_module, layer_module

    layer = Layer(path="c", op="conv", in_channels=8, out_channels=16, in_size=(8, 8), out_size=(8, 8),
                  kernel_size=3)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    (m1, (x1,)), (m2, (x2,)) = layer_module(layer), layer_module(layer)
    arch_module(get_arch("mobilenet_v3_small").replace(input_size=32))
    assert torch.equal(torch.rand(3), expected)
    assert torch.equal(x1, x2) and torch.equal(m1[0].weight, m2[0].weight)
    assert not torch.equal(layer_module(layer, seed=1)[1][0], x1)


def test_a_cycle_cache_reads_nothing_until_asked(tmp_path):
    path = tmp_path / "cycles.json"
    path.write_text("not json")
    cache = CycleCache(path)  # constructing does no I/O, so a bad file is reported where it is used
    with pytest.raises(LatencyError, match="not a SCALE-Sim cycle cache"):
        cache.cycles(ConvShape(8, 8, 3, 4, 4, 1))


def test_edgetpu_charges_layers_off_the_array_from_their_bytes():
    """Segmentation heads: resizes, pooling, sums and the argmax cost by the bytes they move (at 64 bytes per
    cycle) or their lane operations; a plain argmax is a CPU fallback, the one-hot one stays on chip."""
    from edgenas.latency.edgetpu import VECTOR_OPS, vector_cycles
    from edgenas.spec import Layer

    p = EdgeTPUModel().params
    resize = Layer(path="r", op="resize", in_channels=32, out_channels=32, in_size=(64, 64), out_size=(256, 256),
                   mode="bilinear")
    assert vector_cycles(resize, p, 64) == 32 * 256 * 256 * 4 / 64  # lane-bound: 4 taps per output
    add = Layer(path="a", op="add", num_inputs=3, in_channels=96, out_channels=96, in_size=(8, 8), out_size=(8, 8))
    assert vector_cycles(add, p, 64) == (3 + 1) * 96 * 64 / 64  # memory-bound: 3 reads and a write
    net = get_arch("autoseg_edgetpu_xs")
    model = EdgeTPUModel()
    exact, fused = model.predict(net.with_tail("resize512,argmax")), model.predict(
        net.with_tail("resize256,argmax,resize512"))
    assert [x.source for x in exact.layers if x.op == "argmax"] == ["cpu-fallback"]
    assert [x.source for x in fused.layers if x.op == "argmax"] == ["vector"]
    assert fused.total < exact.total
    assert {x.op for x in fused.layers if x.source == "vector"} <= set(VECTOR_OPS)


def test_check_reports_a_busy_machine_from_its_probe():
    """The check re-measures its first arch between the others; a spread above 5% marks the run as busy."""
    from edgenas.latency.base import LatencyReport
    from edgenas.latency.check import check
    from edgenas.space import get_space

    class Timed:  # a stand-in runtime whose timings the test sets: this tests the probe, not a runtime
        def __init__(self, drift):
            self.calls, self.drift = 0, drift

        def predict(self, arch):
            return LatencyReport("t", arch.name, arch.input_size, 1.0, "ms", "fp32")

        def measure(self, arch):
            self.calls += 1
            return 1.0 + self.drift * self.calls / 20  # a machine that gets busier as the check runs

    archs = [get_space("small-28").sample_arch(np.random.default_rng(i)) for i in range(11)]
    quiet = check(Timed(0.0), archs, target="t", space="small-28", seed=0)
    assert quiet.summary()["probe_samples"] == 3 and quiet.probe_cv == 0.0 and not quiet.busy
    busy = check(Timed(0.3), archs, target="t", space="small-28", seed=0)
    assert busy.busy and busy.summary()["machine_busy"] and busy.probe_cv > 0.05
