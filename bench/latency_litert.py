"""cpu-litert predictor accuracy: the zoo (at 224) and 30 sampled small-28 architectures, LUT prediction
against end-to-end LiteRT/XNNPACK measurement on this machine. The correction (scale, a, b) is fitted on
other architectures (4 from edgetpu-v2-224, 6 from small-28). Prints a table, writes JSON; resumable
through the lookup table in --cache-dir.

    python bench/latency_litert.py --cache-dir ~/.cache/edgenas --out bench/results/latency_check_cpu-litert.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from edgenas.env import write_record
from edgenas.latency import get_latency_model
from edgenas.latency.check import check
from edgenas.models import get_arch, list_models
from edgenas.space import get_space


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "edgenas"))
    ap.add_argument("--out", default="bench/results/latency_check_cpu-litert.json")
    ap.add_argument("--samples", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    small, big = get_space("small-28"), get_space("edgetpu-v2-224")
    rng = np.random.default_rng(args.seed)
    archs = [get_arch(n) for n in list_models()] + [small.sample_arch(rng) for _ in range(args.samples)]
    fit_rng = np.random.default_rng(args.seed + 1)
    fit_archs = [big.sample_arch(fit_rng) for _ in range(4)] + [small.sample_arch(fit_rng) for _ in range(6)]
    model = get_latency_model("cpu-litert", cache_dir=args.cache_dir)

    def progress(i, n, res):
        print(f"[{i}/{n}] {res.predicted[-1]:8.3f} ms predicted {res.measured[-1]:8.3f} ms measured "
              f"({res.errors[-1] * 100:+.1f}%)", flush=True)

    result = check(model, archs, target="cpu-litert", space="zoo + small-28", seed=args.seed, fit_archs=fit_archs,
                   progress=progress)
    zoo = len(list_models())
    parts = {"zoo": slice(0, zoo), "small-28": slice(zoo, None), "all": slice(None)}
    summary = {}
    for name, part in parts.items():
        sub = type(result)(result.target, name, result.seed, result.predicted[part], result.measured[part])
        summary[name] = sub.summary()
    print(f"{'set':10} {'n':>4} {'within10':>9} {'within5':>8} {'RMSE ms':>8} {'tau':>6}")
    for name, s in summary.items():
        print(f"{name:10} {s['samples']:4d} {s['within_10pct'] * 100:8.1f}% {s['within_5pct'] * 100:7.1f}% "
              f"{s['rmse_ms']:8.3f} {s['kendall_tau']:6.3f}")
    write_record(args.out, {**result.to_dict(), "summary_by_set": summary, "zoo": list_models(),
                            "overhead": model.lut.overhead.model_dump()}, threads=1)


if __name__ == "__main__":
    main()
