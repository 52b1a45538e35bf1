"""The hardware claims behind the project, measured: (a) IBN vs fused-IBN vs GC-IBN per block at early and
late shapes on each target; (b) how well MACs rank architectures by latency on each target; (c) the model
families on each target beside their published ImageNet top-1. Prints tables, writes JSON and a plot.

    python bench/latency_claims.py --cache-dir ~/.cache/edgenas --out bench/results/latency_claims.json \
        --plot docs/latency_families.png

(b) and (c) reuse the end-to-end measurements of the accuracy benchmarks (bench/results/latency_check_*.json)
where they exist, and measure what is missing.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import torch
from scipy.stats import kendalltau

from common import CACHE, parser, zoo  # bench/ is on the path when a bench script runs
from edgenas.env import write_record
from edgenas.latency import get_latency_model
from edgenas.latency.calibrate import block_latencies
from edgenas.models import MODELS
from edgenas.nn.blocks import BLOCK_MODULES
from edgenas.spec import GCIBN, IBN, FusedIBN, Norm, SpecError, count, parse_arch

# (stage, channels in = out, resolution): early shapes from MobileNetEdgeTPUV2's G1-G2, late ones from G3-G6.
SHAPES = [("early", 16, 112), ("early", 32, 56), ("early", 48, 28), ("late", 96, 14), ("late", 192, 14),
          ("late", 160, 7), ("late", 384, 7)]
BLOCKS = {"ibn": lambda: IBN(expand_ratio=4), "fused_ibn": lambda: FusedIBN(expand_ratio=4),
          "gc_ibn": lambda: GCIBN(expand_ratio=4, group_size=64)}


def block_module(spec, channels):
    module = BLOCK_MODULES[type(spec)](spec, channels, channels, stride=1, dilation=1, norm=Norm(), drop_path=0.0,
                                       gc_mode="native")
    return module.eval()


def gc_valid(channels: int) -> bool:
    block = GCIBN(expand_ratio=4, group_size=64)
    return not block.check(channels, channels)


def blocks_table(targets: dict) -> list[dict]:
    rows = []
    edgetpu = targets["edgetpu"]
    for stage, ch, size in SHAPES:
        for kind, make in BLOCKS.items():
            if kind == "gc_ibn" and not gc_valid(ch):
                continue
            spec = make()
            row = {"stage": stage, "channels": ch, "size": size, "block": kind,
                   "macs": sum(x.macs for x in spec.layers("b", ch, ch, (size, size), 1, 1))}
            layers = [x for x in spec.layers("b", ch, ch, (size, size), 1, 1) if x.op == "conv"]
            row["edgetpu"] = sum(edgetpu.layer_ms(x) for x in layers)
            x = (torch.randn(1, ch, size, size),)
            for name in ("cpu-ort", "cpu-litert"):
                row[name] = statistics.median(targets[name].time_module(block_module(spec, ch), x, 30))
            rows.append(row)
            print(f"{stage:5} {ch:4d}ch {size:3d}px {kind:9} MACs {row['macs'] / 1e6:7.2f} M  edgetpu "
                  f"{row['edgetpu'] * 1e3:7.1f} us  cpu-ort {row['cpu-ort'] * 1e3:8.1f} us  cpu-litert "
                  f"{row['cpu-litert'] * 1e3:8.1f} us", flush=True)
    return rows


def fused_over_ibn(rows: list[dict]) -> dict:
    """Per target, the range over shapes of a fused-IBN block's latency over the IBN block's at the same shape:
    the docs quote these ranges, so the record holds them rather than leaving readers to divide."""
    by_shape = {}
    for r in rows:
        by_shape.setdefault((r["stage"], r["channels"], r["size"]), {})[r["block"]] = r
    out = {}
    for target in ("edgetpu", "cpu-ort", "cpu-litert"):
        ratios = [b["fused_ibn"][target] / b["ibn"][target] for b in by_shape.values()]
        out[target] = {"min": min(ratios), "max": max(ratios)}
    return out


def _load(path: str) -> dict | None:
    p = Path(path)
    return json.loads(p.read_text()) if p.is_file() else None


def macs_rank(targets: dict, ort_check: dict | None, litert_check: dict | None) -> dict:
    out = {}
    if ort_check:
        archs = [parse_arch(json.loads(a)) for a in ort_check["archs"]]
        macs = [count(a).macs for a in archs]
        out["cpu-ort (measured, edgetpu-v2-224)"] = kendalltau(macs, ort_check["measured"]).statistic
        edgetpu = [targets["edgetpu"].predict(a).total for a in archs]
        out["edgetpu (predicted, edgetpu-v2-224)"] = kendalltau(macs, edgetpu).statistic
    if litert_check:
        zoo = len(litert_check["zoo"])
        archs = [parse_arch(json.loads(a)) for a in litert_check["archs"][zoo:]]
        out["cpu-litert (measured, small-28)"] = kendalltau([count(a).macs for a in archs],
                                                            litert_check["measured"][zoo:]).statistic
    for k, v in out.items():
        print(f"Kendall tau(MACs, latency) {k}: {v:.3f}")
    return {k: float(v) for k, v in out.items()}


def families(targets: dict, litert_check: dict | None) -> list[dict]:
    litert = dict(zip(litert_check["zoo"], litert_check["measured"])) if litert_check else {}
    rows = []
    for name, arch, pub in zoo():
        row = {"model": name, "macs": count(arch).macs, "top1": pub.top1, "top1_note": pub.note,
               "edgetpu": targets["edgetpu"].predict(arch).total, "cpu-ort": targets["cpu-ort"].measure(arch),
               "cpu-litert": litert.get(name) or targets["cpu-litert"].measure(arch)}
        rows.append(row)
        print(f"{name:27} top-1 {row['top1']:5.2f}  MACs {row['macs'] / 1e6:7.1f} M  edgetpu {row['edgetpu']:6.3f} ms  "
              f"cpu-ort {row['cpu-ort']:7.2f} ms  cpu-litert {row['cpu-litert']:7.2f} ms", flush=True)
    return rows


def plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    colors = {"MobileNetEdgeTPUV2": "tab:red", "MobileNetEdgeTPU": "tab:orange", "MobileNetV2": "tab:blue",
              "MobileNetV3": "tab:green"}
    for ax, target in zip(axes, ("edgetpu", "cpu-ort", "cpu-litert")):
        for family, color in colors.items():
            pts = sorted((r[target], r["top1"]) for r in rows if MODELS[r["model"]].family == family)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=color, label=family)
        ax.set_xlabel(f"{target} latency (ms, {'predicted int8' if target == 'edgetpu' else 'measured fp32'})")
        ax.set_ylabel("published ImageNet top-1 (%)")
        ax.set_title(target)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = parser(__doc__, record="bench/results/latency_claims.json", cache_dir=CACHE)
    ap.add_argument("--plot", default="docs/latency_families.png")
    args = ap.parse_args()
    targets = {t: get_latency_model(t, cache_dir=args.cache_dir) for t in ("edgetpu", "cpu-ort", "cpu-litert")}
    result = {"edgetpu_blocks_e4": block_latencies(targets["edgetpu"]),
              "blocks": blocks_table(targets),
              "macs_rank": macs_rank(targets, _load("bench/results/latency_check_cpu-ort_edgetpu-v2-224.json"),
                                     _load("bench/results/latency_check_cpu-litert.json"))}
    result["families"] = families(targets, _load("bench/results/latency_check_cpu-litert.json"))
    plot(result["families"], args.plot)
    result["fused_over_ibn"] = fused_over_ibn(result["blocks"])
    write_record(args.out, result, threads=1)


if __name__ == "__main__":
    try:
        main()
    except SpecError as err:
        raise SystemExit(f"error: {err}")
