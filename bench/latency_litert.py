"""cpu-litert / cpu-litert-int8 predictor accuracy: LUT prediction against end-to-end LiteRT/XNNPACK
measurement on this machine, for 100 sampled small-28 architectures and the classification zoo (at 224).

The correction from layer sums to end-to-end latency is fitted on other architectures (24 from small-28,
--fit-big from edgetpu-v2-224), two ways on the same measurements: one scale for every layer (the old model) and one
scale per layer kind (1x1, k x k, depthwise, grouped, elementwise, other), so the record is its own ablation.
The first architecture is re-timed every 10 others as the machine's noise probe. Prints a table, writes JSON;
resumable through the lookup table in --cache-dir (the whole-model timings are redone).

    python bench/latency_litert.py --precision fp32 --out bench/results/latency_check_cpu-litert.json
    python bench/latency_litert.py --precision int8 --fit-big 4 --no-zoo \
        --out bench/results/latency_check_cpu-litert-int8.json
"""

from __future__ import annotations

import time

import numpy as np

from common import CACHE, parser  # bench/ is on the path when a bench script runs
from edgenas.env import write_record
from edgenas.latency import get_latency_model
from edgenas.latency.check import CheckResult
from edgenas.latency.measured import fit_correction
from edgenas.models import get_arch, list_models
from edgenas.space import get_space


def main() -> None:
    ap = parser(__doc__, cache_dir=CACHE)
    ap.add_argument("--out", required=True, help="the JSON record this writes")
    ap.add_argument("--precision", choices=("fp32", "int8"), default="fp32")
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fit-big", type=int, default=6, help="edgetpu-v2-224 archs among the fitted models")
    ap.add_argument("--no-zoo", action="store_true", help="check the sampled archs only")
    args = ap.parse_args()

    target = "cpu-litert-int8" if args.precision == "int8" else "cpu-litert"
    small, big = get_space("small-28"), get_space("edgetpu-v2-224")
    rng = np.random.default_rng(args.seed)
    zoo = [] if args.no_zoo else list_models(task="classification")
    sets = {"small-28": [small.sample_arch(rng) for _ in range(args.samples)], "zoo": [get_arch(n) for n in zoo]}
    sets = {k: v for k, v in sets.items() if v}
    fit_rng = np.random.default_rng(args.seed + 1)
    fit_archs = [small.sample_arch(fit_rng) for _ in range(24)] + [big.sample_arch(fit_rng) for _ in range(args.fit_big)]
    model = get_latency_model(target, cache_dir=args.cache_dir)
    t0 = time.perf_counter()

    def row(arch):
        layers = model.layers_of(arch)
        return {"by_class": model.by_class(layers), "layers": len(layers), "measured": model.measure(arch)}

    fit_rows = [row(a) for a in fit_archs]
    print(f"fitted on {len(fit_rows)} models ({time.perf_counter() - t0:.0f} s, {len(model.lut.entries)} entries)",
          flush=True)
    corrections = {
        "one scale": fit_correction([{"all": sum(r["by_class"].values())} for r in fit_rows],
                                    [r["layers"] for r in fit_rows], [r["measured"] for r in fit_rows]),
        "scale per layer kind": fit_correction([r["by_class"] for r in fit_rows], [r["layers"] for r in fit_rows],
                                               [r["measured"] for r in fit_rows], per_kind=True),
    }
    probe, probe_ms, rows = sets["small-28"][0], [], {}
    for name, archs in sets.items():
        rows[name] = []
        for i, arch in enumerate(archs):
            rows[name].append(row(arch))
            if i % 10 == 0:
                probe_ms.append(model.measure(probe))
            print(f"[{name} {i + 1}/{len(archs)}] {rows[name][-1]['measured']:8.3f} ms measured", flush=True)
    model.lut.overhead = corrections["one scale"]  # the default form (the per-kind fit did not do better)
    model.save()

    summaries: dict[str, dict] = {}
    for cname, corr in corrections.items():
        for name, rs in rows.items():
            res = CheckResult(target, name, args.seed, measured=[r["measured"] for r in rs],
                              predicted=[corr.total(r["by_class"] if corr.class_scales else
                                                    {"all": sum(r["by_class"].values())}, r["layers"]) for r in rs],
                              probe_ms=probe_ms)
            summaries.setdefault(cname, {})[name] = res.summary()
    print(f"\n{target}, {args.samples} small-28 archs + {len(zoo)} zoo models; probe CV "
          f"{summaries['one scale']['small-28']['probe_cv'] * 100:.1f}% over {len(probe_ms)} timings")
    print(f"{'correction':22} {'set':9} {'n':>4} {'within10':>9} {'within5':>8} {'median|e|':>9} {'tau':>6}")
    for cname, by_set in summaries.items():
        for name, s in by_set.items():
            print(f"{cname:22} {name:9} {s['samples']:4d} {s['within_10pct'] * 100:8.1f}% {s['within_5pct'] * 100:7.1f}% "
                  f"{s['median_abs_error'] * 100:8.1f}% {s['kendall_tau']:6.3f}")
    write_record(args.out, {
        "target": target, "seed": args.seed, "samples": args.samples, "fit_big": args.fit_big, "zoo": zoo, "fit_models": len(fit_rows),
        "corrections": {k: v.model_dump() for k, v in corrections.items()}, "summary": summaries,
        "probe_ms": probe_ms, "fit_rows": fit_rows, "rows": rows,
        "archs": {name: [a.to_json(indent=None) for a in archs] for name, archs in sets.items()},
        "lut_entries": len(model.lut.entries), "seconds": time.perf_counter() - t0,
        "lut": model.lut.fingerprint.model_dump()}, threads=1)


if __name__ == "__main__":
    main()
