"""cpu-litert (LiteRT + XNNPACK) and the own-device kit: conversion, measurement, and importing results."""

import json

import pytest

from edgenas.latency import LatencyError, get_latency_model
from edgenas.latency.kit import import_results, parse_benchmark, write_kit
from edgenas.latency.lut import layer_key

from edgenas.spec import IBN, Stage

from test_latency import _assert_timed_whole_model, _timed_calls, tiny_arch


def test_cpu_litert_predicts_and_measures(tmp_path, monkeypatch):
    model = get_latency_model("cpu-litert", cache_dir=tmp_path, runs=5)
    report = model.predict(tiny_arch())
    assert model.lut.fingerprint.runtime.startswith("ai-edge-litert") and report.environment["runtime"].startswith(
        "ai-edge-litert")
    keys = [layer_key(x, "fp32") for x in model.layers_of(tiny_arch())]
    assert set(model.lut.entries) == set(keys) and model.measured == len(set(keys))
    assert report.total == sum(model.lut.entries[k].median_ms for k in keys) > 0  # no overhead fitted yet
    calls = _timed_calls(monkeypatch, model)
    _assert_timed_whole_model(calls, tiny_arch(), model.measure(tiny_arch()), runs=5)


def test_cpu_litert_int8_is_its_own_table(tmp_path, monkeypatch):
    model = get_latency_model("cpu-litert-int8", cache_dir=tmp_path, runs=5)
    assert model.name == "cpu-litert-int8" and model.precision == "int8"
    report = model.predict(tiny_arch())
    assert report.precision == "int8" and report.total > 0 and (tmp_path / "lut-cpu-litert-int8.json").is_file()
    assert all(k.endswith("|int8") for k in model.lut.entries) and model.lut.fingerprint.precision == "int8"
    calls = _timed_calls(monkeypatch, model)
    _assert_timed_whole_model(calls, tiny_arch(), model.measure(tiny_arch()), runs=5)
    with pytest.raises(LatencyError, match="a cpu-litert-int8 table, not cpu-litert"):
        get_latency_model("cpu-litert", lut_path=tmp_path / "lut-cpu-litert-int8.json").predict(tiny_arch())


def _benchmark_output(median_us: float, runs: int = 50) -> str:
    """What LiteRT's benchmark_model prints (the figures are the test's own)."""
    return (f"INFO: Num runs: [{runs}]\nINFO: count=5 first=900 curr=800 min=780 max=900 avg=820 std=40\n"
            f"INFO: count={runs} first={median_us} curr={median_us} min={median_us * 0.9} max={median_us * 1.2} "
            f"avg={median_us * 1.02} std=3 p5={median_us * 0.92} median={median_us} p95={median_us * 1.1}\n"
            f"INFO: Inference timings in us: Init: 3000, First inference: 900, Warmup (avg): 820, "
            f"Inference (avg): {median_us * 1.02}\n")


def test_kit_then_import_gives_a_device_table(tmp_path):
    deeper = tiny_arch(16).replace(stages=(Stage(out_channels=16, blocks=(IBN(expand_ratio=4, stride=2),
                                                                         IBN(expand_ratio=2, se_ratio=0.25))),))
    archs = [tiny_arch(8), tiny_arch(16), deeper]  # different layer counts, so the overhead fit is determined
    manifest = write_kit(archs, tmp_path / "kit", archs)
    kit = tmp_path / "kit"
    assert (kit / "run_on_device.sh").stat().st_mode & 0o100
    assert len(list((kit / "layers").glob("*.tflite"))) == len(manifest["layers"]) > 10
    # Fake a phone: each layer takes 10 us per layer index, a call costs 20 us, models add 5 us per layer.
    results = kit / "results"
    for sub in ("layers", "passthrough", "models"):
        (results / sub).mkdir(parents=True)
    (results / "device.txt").write_text("model=Pixel 8\nsoc=Tensor G3\nabi=arm64-v8a\ncores=9\nthreads=1\n"
                                        "runtime_version=LiteRT version 2.3.0\n")
    true_ms = {}
    for i, (key, item) in enumerate(manifest["layers"].items()):
        true_ms[key] = 0.010 * (i + 1)
        (results / f"{item['file']}.txt").write_text(_benchmark_output(20 + 10 * (i + 1)))
        (results / f"{item['passthrough']}.txt").write_text(_benchmark_output(20))
    for m in manifest["models"]:
        total_us = sum(true_ms[k] for k in m["keys"]) * 1e3 + 5 * len(m["keys"]) + 30
        (results / f"{m['file']}.txt").write_text(_benchmark_output(total_us))
    lut = import_results(kit, "pixel8")
    assert lut.device == "pixel8" and lut.fingerprint.cpu == "Pixel 8 (Tensor G3, arm64-v8a)"
    assert {k: round(e.median_ms, 6) for k, e in lut.entries.items()} == pytest.approx(true_ms)
    assert (lut.overhead.scale, lut.overhead.a_ms, lut.overhead.b_ms_per_layer) == pytest.approx((1, 0.03, 0.005),
                                                                                               abs=1e-6)
    lut.save(tmp_path / "pixel8.json")
    phone = get_latency_model("cpu-litert", lut_path=tmp_path / "pixel8.json")
    expected = sum(true_ms[layer_key(x, "fp32")] for x in phone.layers_of(archs[1]))
    expected += 0.03 + 0.005 * len(phone.layers_of(archs[1]))
    assert phone.predict(archs[1]).total == pytest.approx(expected)
    with pytest.raises(LatencyError, match="belongs to 'pixel8' and this machine differs"):
        phone.predict(tiny_arch(32))  # a layer the phone never ran: no silent number


def test_import_errors_name_the_file(tmp_path):
    with pytest.raises(LatencyError, match="not an edgenas kit"):
        import_results(tmp_path, "x")
    (tmp_path / "manifest.json").write_text(json.dumps({"layers": {}, "models": [], "precision": "fp32"}))
    with pytest.raises(LatencyError, match=r"device.txt: missing \(run run_on_device.sh first\)"):
        import_results(tmp_path, "x")
    bad = tmp_path / "out.txt"
    bad.write_text("Error: could not open model\n")
    with pytest.raises(LatencyError, match="out.txt: not benchmark_model output"):
        parse_benchmark(bad)
