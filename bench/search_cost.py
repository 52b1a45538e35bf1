"""What a TuNAS search costs, per phase, against training its result once (issue 15's cost goal: <= 2x).

Each variant runs the `small-28` search of `bench/search_benchmarks.py` (edgetpu 0.32 ms, 500 steps of batch 48,
1 thread) with the search's own phase timers (``result.json``'s ``phase_seconds``), then, in the same process,
trains the chosen architecture alone from scratch for the same 500 steps and batch. Variants:

  rl192   the settings of the earlier benchmarks: a 192-image held-out batch per controller step
  rl48    the held-out batch the size of the weight batch (TuNAS draws both batches alike)

    python bench/search_cost.py [--variants rl192,rl48] [--out runs/bench_cost]   # one variant per core:
    taskset -c 0 python bench/search_cost.py --variants rl192 & taskset -c 1 python bench/search_cost.py --variants rl48
    python bench/search_cost.py --report

Resumable: a finished variant is stored in OUT/state-<variant>.json; searches resume from their checkpoints.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from edgenas.config import load_config
from edgenas.env import write_record
from edgenas.io import write_atomic
from edgenas.search.baselines import train_briefly
from edgenas.search.proxy import splits
from edgenas.search.tunas import search
from edgenas.space import get_space

SETTINGS = ["search.space=small-28", "search.target=edgetpu", "search.latency_target=0.32",
            "data.train_subset=20000", "search.heldout=2000", "train.batch_size=48", "search.steps=500",
            "search.rl_lr=0.05", "train.lr=0.05", "train.grad_clip=5", "data.augment=none", "train.threads=1",
            "search.checkpoint_every=100"]
VARIANTS = {"rl192": ["search.rl_batch=192"], "rl48": ["search.rl_batch=48"]}


def run(variant: str, out: Path) -> dict:
    path = out / f"state-{variant}.json"
    if path.is_file():
        return json.loads(path.read_text())
    torch.set_num_threads(1)
    cfg = load_config(overrides=SETTINGS + VARIANTS[variant] + [f"out={out / variant}"], base={"search": {}})
    t0 = time.time()
    result = search(cfg, resume=True, progress=False)
    search_seconds = time.time() - t0
    space = get_space(cfg.search.space)
    batches, held = splits(cfg, space, cfg.search.heldout)
    t0 = time.time()
    top1 = train_briefly(space.fix(result["decision"]), batches, held(0), cfg.search.steps, cfg.train.lr, 0)
    train_seconds = time.time() - t0
    row = {"variant": variant, "settings": SETTINGS + VARIANTS[variant], "search_seconds": search_seconds,
           "phase_seconds": result["phase_seconds"], "train_seconds": train_seconds,
           "ratio": search_seconds / train_seconds, "predicted_latency": result["predicted_latency"],
           "target_error": result["target_error"], "stand_alone_top1": top1,
           "decision": result["decision"]}
    write_atomic(path, json.dumps(row, indent=1))
    print(f"{variant}: search {search_seconds:.0f} s, train once {train_seconds:.0f} s, "
          f"ratio {row['ratio']:.2f}", flush=True)
    return row


def report(out: Path, record: str) -> None:
    rows = [json.loads(p.read_text()) for v in VARIANTS if (p := out / f"state-{v}.json").is_file()]
    write_record(record, {"what": "TuNAS search cost per phase against one training of its result, small-28",
                          "variants": rows}, threads=1)
    phases = sorted({k for r in rows for k in r["phase_seconds"]})
    print(f"{'variant':<8} " + " ".join(f"{p:>19}" for p in phases) + f" {'search':>7} {'train':>6} {'ratio':>5}")
    for r in rows:
        print(f"{r['variant']:<8} " + " ".join(f"{r['phase_seconds'].get(p, 0):>19.1f}" for p in phases)
              + f" {r['search_seconds']:>7.0f} {r['train_seconds']:>6.0f} {r['ratio']:>5.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--report", action="store_true")
    ap.add_argument("--out", default="runs/bench_cost")
    ap.add_argument("--record", default="bench/results/search_cost.json")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.report:
        for v in args.variants.split(","):
            run(v, out)
    report(out, args.record)


if __name__ == "__main__":
    main()
