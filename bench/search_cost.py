"""What a TuNAS search costs, per phase, against training its result once (issue 15's cost goal: <= 2x).

Each variant runs the `small-28` search of `bench/search_benchmarks.py` (edgetpu 0.32 ms, 500 steps of batch 48,
1 thread) with the search's own phase timers (``result.json``'s ``phase_seconds``), then, in the same process,
trains the chosen architecture alone from scratch for the same 500 steps and batch. Variants:

  rl192   the settings of the earlier benchmarks: a 192-image held-out batch per controller step
  rl48    the held-out batch the size of the weight batch (TuNAS draws both batches alike)

``--step`` profiles one weight step instead: the supernet's step (forward, backward, optimizer) on
``STEP_DECISIONS`` uniformly sampled decisions, against each decision's stand-alone model taking the same step
on the same batch: what slicing shared weights costs, apart from which paths a search samples.

    python bench/search_cost.py [--variants rl192,rl48] [--out runs/bench_cost]   # one variant per core:
    taskset -c 0 python bench/search_cost.py --variants rl192 & taskset -c 1 python bench/search_cost.py --variants rl48
    python bench/search_cost.py --step
    python bench/search_cost.py --report

Resumable: a finished variant is stored in OUT/state-<variant>.json; searches resume from their checkpoints.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from common import parser  # bench/ is on the path when a bench script runs
from edgenas.config import load_config
from edgenas.env import write_record
from edgenas.io import write_atomic
from edgenas.nn import build_model
from edgenas.search.baselines import train_briefly
from edgenas.search.proxy import splits
from edgenas.search.supernet import Supernet
from edgenas.search import search
from edgenas.space import get_space
from edgenas.train.loop import make_optimizer

SETTINGS = ["search.space=small-28", "search.target=edgetpu", "search.latency_target=0.32",
            "data.train_subset=20000", "search.heldout=2000", "train.batch_size=48", "search.steps=500",
            "search.rl_lr=0.05", "train.lr=0.05", "train.grad_clip=5", "data.augment=none", "train.threads=1",
            "search.checkpoint_every=100"]
VARIANTS = {"rl192": ["search.rl_batch=192"], "rl48": ["search.rl_batch=48"]}
STEP_DECISIONS, STEP_REPEATS = 30, 3


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


def profile_step(out: Path) -> dict:
    """Milliseconds per weight step, supernet against stand-alone, on the same decisions and batches."""
    path = out / "state-step.json"
    if path.is_file():
        return json.loads(path.read_text())
    torch.set_num_threads(1)
    cfg = load_config(overrides=SETTINGS, base={"search": {}})
    space = get_space(cfg.search.space)
    batches, _ = splits(cfg, space, cfg.search.heldout)
    rng = np.random.default_rng(0)
    decisions = [space.sample(rng) for _ in range(STEP_DECISIONS)]
    data = [batches(i) for i in range(STEP_DECISIONS)]

    def timed_step(model, opt, x, y, decision=None) -> dict:
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x) if decision is None else model(x, decision), y)
        t1 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        opt.step()
        return {"forward": t1 - t0, "backward": t2 - t1, "optimizer": time.perf_counter() - t2}

    def mean_ms(rows: list[dict]) -> dict:
        return {k: 1000 * float(np.mean([r[k] for r in rows])) for k in rows[0]}

    torch.manual_seed(0)
    net = Supernet(space).train()
    opt = make_optimizer(net, cfg)
    for d, (x, y) in zip(decisions[:3], data):  # first steps allocate the optimizer's state
        timed_step(net, opt, x, y, d)
    shared = [timed_step(net, opt, x, y, d) for d, (x, y) in zip(decisions, data)]
    alone = []
    for d, (x, y) in zip(decisions, data):
        model = build_model(space.fix(d)).train()
        opt = make_optimizer(model, cfg)
        timed_step(model, opt, x, y)
        alone += [timed_step(model, opt, x, y) for _ in range(STEP_REPEATS)]
    row = {"decisions": STEP_DECISIONS, "supernet_ms": mean_ms(shared), "alone_ms": mean_ms(alone)}
    row["ratio"] = sum(row["supernet_ms"].values()) / sum(row["alone_ms"].values())
    write_atomic(path, json.dumps(row, indent=1))
    return row


def report(out: Path, record: str) -> None:
    rows = [json.loads(p.read_text()) for v in VARIANTS if (p := out / f"state-{v}.json").is_file()]
    rec = {"what": "TuNAS search cost per phase against one training of its result, small-28", "variants": rows}
    if (step := out / "state-step.json").is_file():
        rec["step_profile"] = json.loads(step.read_text())
    write_record(record, rec, threads=1)
    phases = sorted({k for r in rows for k in r["phase_seconds"]})
    print(f"{'variant':<8} " + " ".join(f"{p:>19}" for p in phases) + f" {'search':>7} {'train':>6} {'ratio':>5}")
    for r in rows:
        print(f"{r['variant']:<8} " + " ".join(f"{r['phase_seconds'].get(p, 0):>19.1f}" for p in phases)
              + f" {r['search_seconds']:>7.0f} {r['train_seconds']:>6.0f} {r['ratio']:>5.2f}")
    if "step_profile" in rec:
        sp = rec["step_profile"]
        print(f"one weight step, ms ({sp['decisions']} sampled decisions): supernet "
              + ", ".join(f"{k} {v:.1f}" for k, v in sp["supernet_ms"].items()) + "; stand-alone "
              + ", ".join(f"{k} {v:.1f}" for k, v in sp["alone_ms"].items()) + f"; ratio {sp['ratio']:.2f}")


def main() -> None:
    ap = parser(__doc__, record="bench/results/search_cost.json", record_flag="--record",
                work="runs/bench_cost")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--report", action="store_true")
    ap.add_argument("--step", action="store_true", help="profile one weight step (supernet against stand-alone)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.step:
        profile_step(out)
    elif not args.report:
        for v in args.variants.split(","):
            run(v, out)
    report(out, args.record)


if __name__ == "__main__":
    main()
