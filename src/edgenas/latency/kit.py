"""Latency tables for your own device: a kit of one ``.tflite`` per distinct layer plus a script that runs
LiteRT's ``benchmark_model`` on each over adb, and the import of its results into a lookup table.

Kit layout: ``manifest.json`` (layer keys, files, and the whole models used to fit the overhead),
``layers/*.tflite``, ``passthrough/*.tflite`` (the call cost without a layer, per input signature),
``models/*.tflite``, ``run_on_device.sh``. The script writes ``results/<file>.txt`` (benchmark_model's output)
and ``results/device.txt``; ``import_results`` reads them back.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

from ..env import write_record
from ..export.litert import to_tflite
from ..spec import Arch, parse_spec, spec_layers
from .base import LatencyError
from .lut import Fingerprint, Lut, LutEntry, Overhead, layer_key
from .measured import MEASURED_OPS, Passthrough, arch_module, fit_correction, layer_class, layer_module

SCRIPT = r"""#!/usr/bin/env bash
# Runs LiteRT's benchmark_model on every .tflite of this kit on an Android device over adb.
# Needs: adb, and benchmark_model for the device's ABI (LiteRT's prebuilt "android_aarch64_benchmark_model"),
# given as BENCHMARK_MODEL=path/to/benchmark_model. THREADS (default 1) and RUNS (default 50) are optional.
set -euo pipefail
cd "$(dirname "$0")"
: "${BENCHMARK_MODEL:?set BENCHMARK_MODEL to the benchmark_model binary for your device}"
THREADS="${THREADS:-1}"; RUNS="${RUNS:-50}"; DEST=/data/local/tmp/edgenas-kit
adb shell mkdir -p "$DEST"
adb push "$BENCHMARK_MODEL" "$DEST/benchmark_model" >/dev/null
adb shell chmod +x "$DEST/benchmark_model"
mkdir -p results
{
  echo "model=$(adb shell getprop ro.product.model | tr -d '\r')"
  echo "soc=$(adb shell getprop ro.soc.model | tr -d '\r')"
  echo "abi=$(adb shell getprop ro.product.cpu.abi | tr -d '\r')"
  echo "cores=$(adb shell nproc | tr -d '\r')"
  echo "threads=$THREADS"
  echo "runtime_version=$(adb shell "$DEST/benchmark_model" --help 2>&1 | grep -m1 -o 'LiteRT version [0-9.]*\|TF Lite version [0-9.]*' | tr -d '\r' || true)"
} > results/device.txt
for f in layers/*.tflite passthrough/*.tflite models/*.tflite; do
  adb push "$f" "$DEST/m.tflite" >/dev/null
  mkdir -p "results/$(dirname "$f")"
  adb shell "$DEST/benchmark_model" --graph="$DEST/m.tflite" --num_threads="$THREADS" --use_xnnpack=true \
    --num_runs="$RUNS" --warmup_runs=5 > "results/$f.txt" 2>&1 || echo "failed: $f" >&2
  echo "$f"
done
echo "done: now run  edgenas lut import $(pwd) --device NAME"
"""


def write_kit(archs: list[Arch], out: str | Path, fit_archs: list[Arch], *, space: str = "", progress=None) -> dict:
    """One .tflite per distinct layer of ``archs`` (and a passthrough per input signature), the ``fit_archs``
    as whole models, the manifest and the adb script."""
    out = Path(out)
    for sub in ("layers", "passthrough", "models"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    layers, passes = {}, {}
    for arch in archs:
        for layer in (x for x in _layers(arch) if layer_key(x, "fp32") not in layers):
            module, inputs = layer_module(layer)
            signature = "|".join("x".join(map(str, t.shape)) for t in inputs)
            if signature not in passes:
                passes[signature] = f"passthrough/p{len(passes):04d}.tflite"
                to_tflite(Passthrough(), inputs, out / passes[signature])
            name = f"layers/l{len(layers):04d}.tflite"
            to_tflite(module, inputs, out / name)
            layers[layer_key(layer, "fp32")] = {"file": name, "passthrough": passes[signature]}
            if progress:
                progress(len(layers))
    models = []
    for i, arch in enumerate(fit_archs):
        name = f"models/m{i:03d}.tflite"
        to_tflite(*arch_module(arch), out / name)
        models.append({"file": name, "arch": arch.to_dict(), "keys": [layer_key(x, "fp32") for x in _layers(arch)]})
        for key in models[-1]["keys"]:
            if key not in layers:
                raise LatencyError(f"{name}: layer {key} is not in the kit (fit models must use kit layers)")
    manifest = {"kind": "edgenas-lut-kit", "version": 1, "space": space, "precision": "fp32",
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "layers": layers,
                "models": models}
    write_record(out / "manifest.json", manifest)  # where the kit was built travels with it
    script = out / "run_on_device.sh"
    script.write_text(SCRIPT)
    script.chmod(0o755)
    return manifest


def _layers(arch: Arch):
    return [x for x in spec_layers(arch) if x.op in MEASURED_OPS]


_STATS = re.compile(r"count=(\d+).*?min=([\d.e+]+).*?max=([\d.e+]+).*?avg=([\d.e+]+)")
_MEDIAN = re.compile(r"median=([\d.e+]+)")
_AVG = re.compile(r"Inference \(avg\):\s*([\d.e+]+)")


def parse_benchmark(path: Path) -> dict:
    """benchmark_model output -> microseconds: the steady-state run statistics (median where printed)."""
    try:
        text = path.read_text()
    except OSError:
        raise LatencyError(f"{path}: no result (did run_on_device.sh run this file?)") from None
    stats = _STATS.findall(text)
    avg = _AVG.search(text)
    if not stats or not avg:
        raise LatencyError(f"{path}: not benchmark_model output (no 'count=... avg=' and 'Inference (avg)' lines)")
    count, lo, hi, mean = stats[-1]  # the last statistics line is the timed runs (the first is the warm-up)
    median = _MEDIAN.findall(text)
    return {"runs": int(count), "min_us": float(lo), "max_us": float(hi),
            "median_us": float(median[-1]) if median else float(avg.group(1))}


def import_results(kit: str | Path, device: str) -> Lut:
    """A lookup table for ``device`` from a kit whose ``results/`` the device script filled."""
    kit = Path(kit)
    try:
        manifest = json.loads((kit / "manifest.json").read_text())
    except (OSError, ValueError) as err:
        raise LatencyError(f"{kit}: not an edgenas kit ({err})") from None
    info = dict(line.split("=", 1) for line in _read(kit / "results" / "device.txt").splitlines() if "=" in line)
    try:
        fingerprint = Fingerprint(cpu=f"{info.get('model', '?')} ({info.get('soc', '?')}, {info.get('abi', '?')})",
                                  cores=int(info.get("cores") or 0), runtime="LiteRT benchmark_model (XNNPACK)",
                                  runtime_version=info.get("runtime_version", ""), threads=int(info["threads"]),
                                  precision=manifest["precision"])
    except (KeyError, ValueError) as err:
        raise LatencyError(f"{kit / 'results' / 'device.txt'}: incomplete device description ({err})") from None
    entries, passthrough = {}, {}
    for key, item in manifest["layers"].items():
        if item["passthrough"] not in passthrough:
            passthrough[item["passthrough"]] = parse_benchmark(kit / "results" / f"{item['passthrough']}.txt")
        layer = parse_benchmark(kit / "results" / f"{item['file']}.txt")
        empty = passthrough[item["passthrough"]]["median_us"]
        entries[key] = LutEntry(median_ms=max(layer["median_us"] - empty, 0.0) / 1e3,
                                p10_ms=max(layer["min_us"] - empty, 0.0) / 1e3,
                                p90_ms=max(layer["max_us"] - empty, 0.0) / 1e3, runs=layer["runs"])
    lut = Lut(target="cpu-litert", device=device, fingerprint=fingerprint,
              date=datetime.now(timezone.utc).isoformat(timespec="seconds"), entries=entries)
    lut.overhead = _fit(manifest["models"], entries, kit)
    return lut


def _fit(models: list[dict], entries: dict, kit: Path) -> Overhead | None:
    if len(models) < 3:
        return None
    rows, layers, measured = [], [], []
    for m in models:
        measured.append(parse_benchmark(kit / "results" / f"{m['file']}.txt")["median_us"] / 1e3)
        layers.append(len(m["keys"]))
        row: dict[str, float] = {}
        for x in _layers(parse_spec(m["arch"])):
            row[layer_class(x)] = row.get(layer_class(x), 0.0) + entries[layer_key(x, "fp32")].median_ms
        rows.append(row)
    return fit_correction(rows, layers, measured)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        raise LatencyError(f"{path}: missing (run run_on_device.sh first)") from None

