"""cpu-litert-int8 against something no one here built: Google's own two 8-bit TFLite files
(tests/fixtures/google), timed with LiteRT/XNNPACK on this machine at 1 thread, against the lookup-table
prediction for our imported equivalents (autoseg_edgetpu_xs with Google's fused tail resize256,argmax,resize512
at 512, and mobilenet_edgetpu_100 at 224), and against our own int8 conversion of the same models timed the
same way where litert-torch converts it. Timings interleaved over rounds; medians reported.

Run after bench/latency_litert.py --precision int8 (its lookup table and fitted correction are used):

    python bench/litert_google.py --out bench/results/litert_google.json
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from common import CACHE, parser  # bench/ is on the path when a bench script runs
from edgenas.env import write_record
from edgenas.latency import get_latency_model
from edgenas.latency.litert import time_tflite
from edgenas.latency.lut import Overhead
from edgenas.models import get_arch

ROOT = Path(__file__).resolve().parents[1]
CASES = {  # Google's file -> our model and the tail that file serves
    "autoseg_edgetpu_xs_fused_argmax.tflite": ("autoseg_edgetpu_xs", "resize256,argmax,resize512"),
    "mobilenet_edgetpu_224_1.0_uint8.tflite": ("mobilenet_edgetpu_100", None),
}


def main() -> None:
    ap = parser(__doc__, record="bench/results/litert_google.json", cache_dir=CACHE, rounds=5, runs=20)
    ap.add_argument("--check", default="bench/results/latency_check_cpu-litert-int8.json")
    ap.add_argument("--fp32", action="store_true", help="also give the fp32 target's prediction")
    args = ap.parse_args()

    int8 = get_latency_model("cpu-litert-int8", cache_dir=args.cache_dir, runs=args.runs)
    fp32 = get_latency_model("cpu-litert", cache_dir=args.cache_dir, runs=args.runs)
    check = Path(args.check)
    if not check.is_file():
        raise SystemExit(f"{check}: missing; run bench/latency_litert.py --precision int8 first")
    # the one-scale correction that check fitted (its per-kind form did worse on held-out architectures)
    int8.lut.overhead = Overhead(**json.loads(check.read_text())["corrections"]["one scale"])
    fp32_check = check.with_name("latency_check_cpu-litert.json")
    if fp32_check.is_file():
        fp32.lut.overhead = Overhead(**json.loads(fp32_check.read_text())["corrections"]["one scale"])
    rows = {}
    for file, (name, tail) in CASES.items():
        arch = get_arch(name)
        arch = arch.with_tail(tail) if tail else arch
        rows[file] = {"model": name, "tail": tail, "input_size": arch.input_size,
                      "predicted_int8_ms": int8.predict(arch).total,
                      "predicted_fp32_ms": fp32.predict(arch).total if args.fp32 else None,
                      "google_ms": [], "ours_int8_ms": [], "ours_error": None}
        print(f"{name}: predicted int8 {rows[file]['predicted_int8_ms']:.2f} ms", flush=True)
    t0 = time.perf_counter()
    for r in range(args.rounds):
        for file, row in rows.items():
            row["google_ms"].append(statistics.median(time_tflite(ROOT / "tests/fixtures/google" / file, 1,
                                                                  args.runs)))
            if row["ours_error"] is None:
                arch = get_arch(row["model"])
                arch = arch.with_tail(row["tail"]) if row["tail"] else arch
                try:
                    row["ours_int8_ms"].append(int8.measure(arch, args.runs))
                except Exception as err:  # litert-torch cannot convert every graph; record why
                    row["ours_error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"
        print(f"round {r + 1}/{args.rounds} ({time.perf_counter() - t0:.0f} s)", flush=True)
    print(f"\n{'model':24} {'Google ms':>10} {'predicted':>10} {'error':>7} {'ours int8':>10}")
    for file, row in rows.items():
        row["google_median_ms"] = statistics.median(row["google_ms"])
        row["ours_median_ms"] = statistics.median(row["ours_int8_ms"]) if row["ours_int8_ms"] else None
        row["error_vs_google"] = row["predicted_int8_ms"] / row["google_median_ms"] - 1
        ours = f"{row['ours_median_ms']:10.2f}" if row["ours_median_ms"] else "   failed"
        print(f"{row['model']:24} {row['google_median_ms']:10.2f} {row['predicted_int8_ms']:10.2f} "
              f"{row['error_vs_google'] * 100:+6.1f}% {ours}")
        if row["ours_error"]:
            print(f"  our int8 conversion: {row['ours_error']}")
    write_record(args.out, {"rows": rows, "rounds": args.rounds, "runs": args.runs,
                            "correction": int8.lut.overhead.model_dump(),
                            "lut": int8.lut.fingerprint.model_dump()}, threads=1)


if __name__ == "__main__":
    main()
