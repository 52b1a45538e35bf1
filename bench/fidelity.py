"""One-shot fidelity: does the supernet rank architectures as training them alone does? (issue 15)

20 architectures of ``small-28`` spread over its edgetpu latency range (300 sampled, sorted by predicted
latency, every 15th quantile taken) are each trained stand-alone for ``ALONE_STEPS`` steps with two seeds; the
two seeds' agreement (Kendall tau) says how far the stand-alone ranking itself can be trusted. Against their
mean, each supernet variant's estimates are ranked: Kendall tau with its p-value and the top-5 overlap.

Supernet variants (same data, batch, lr, steps unless named; weights only, no controller, so what is measured
is the shared weights' ranking, which TuNAS's controller reads):

  uniform        every step a uniformly sampled architecture (fair path sampling throughout)
  tunas_warmup   uniform sampling with TuNAS's warm-up over the first 25%: all ops of a position summed and the
                 widest filters, each with a probability falling from 1 to 0 (what the search does before its
                 controller starts)
  uniform_long   uniform, twice the steps

Estimators: ``batch_stats`` (TuNAS: BatchNorm with the held-out batch's statistics, batches of 192) and
``recalibrated`` (the extracted model with its BatchNorm statistics recalibrated on 4 training batches, then
evaluated in eval mode).

Resumable: each unit (a stand-alone training, a supernet) is stored in OUT/state-<worker>.json as it ends.
Run the stand-alone trainings on two cores at once with ``--worker alone0`` and ``--worker alone1`` (one seed
each) and the supernets with ``--worker supernets`` (or ``supernets:uniform,tunas_warmup`` for some); then
``--report`` merges the states into the record.

    (python bench/fidelity.py --worker alone0; python bench/fidelity.py --worker supernets:uniform) &
    (python bench/fidelity.py --worker alone1; python bench/fidelity.py --worker supernets:tunas_warmup) &
    wait; python bench/fidelity.py --worker supernets:uniform_long; python bench/fidelity.py --report
    # the report lists the variants that have run
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edgenas.config import load_config
from edgenas.env import write_record
from edgenas.eval.metrics import top1
from edgenas.io import write_atomic
from edgenas.latency import get_latency_model
from edgenas.search.baselines import train_briefly
from edgenas.search.proxy import splits
from edgenas.search.supernet import Supernet, recalibrate_bn
from edgenas.search.tunas import step_generator, warmup_paths
from edgenas.space import get_space
from edgenas.train.schedule import lr_factor

SPACE, ARCHS, POOL, ALONE_STEPS, SEEDS = "small-28", 20, 300, 300, (0, 1)
SETTINGS = ["data.train_subset=20000", "search.heldout=2000", "train.batch_size=48", "data.augment=none",
            "train.lr=0.05", "train.grad_clip=5", "train.threads=1"]
SUPERNETS = {"uniform": (500, False), "tunas_warmup": (500, True), "uniform_long": (1000, False)}
HELD_BATCH = 192


class State:
    def __init__(self, path: Path):
        self.path = path
        self.data = json.loads(path.read_text()) if path.is_file() else {}

    def put(self, key, value):
        self.data[key] = value
        write_atomic(self.path, json.dumps(self.data, indent=1))
        return value


def architectures(space) -> list[dict]:
    """``ARCHS`` decisions spread evenly over the sampled edgetpu latency range (seeded)."""
    edgetpu = get_latency_model("edgetpu")
    rng = np.random.default_rng(2026)
    pool = [space.sample(rng) for _ in range(POOL)]
    priced = sorted(((edgetpu.predict(space.fix(d)).total, i) for i, d in enumerate(pool)))
    picks = np.linspace(0, len(priced) - 1, ARCHS).round().astype(int)
    return [{"decision": pool[priced[p][1]], "edgetpu_ms": priced[p][0]} for p in picks]


def train_supernet(space, cfg, batches, steps: int, tunas_warmup: bool) -> Supernet:
    torch.manual_seed(0)
    net = Supernet(space).train()
    opt = torch.optim.SGD(net.parameters(), lr=cfg.train.lr, momentum=0.9, nesterov=True)
    warm = int(0.25 * steps)
    for step in range(steps):
        gen = step_generator(0, step, 0)
        decision = space.sample(np.random.default_rng(int(torch.randint(0, 2**31, (1,), generator=gen))))
        parallel = {}
        if tunas_warmup and step < warm:
            decision, parallel = warmup_paths(space, decision, 1.0 - step / warm, gen)
        for group in opt.param_groups:
            group["lr"] = cfg.train.lr * lr_factor(step, steps, max(1, steps // 40))
        x, y = batches(step)
        loss = F.cross_entropy(net(x, decision, parallel), y, label_smoothing=cfg.train.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.train.grad_clip)
        opt.step()
    return net


@torch.no_grad()
def estimates(net: Supernet, decision: dict, held: list, calib: list) -> dict:
    net.train()
    batch_stats = float(np.mean([top1(net(x, decision), y) for x, y in held]))
    model = recalibrate_bn(net.extract(decision), calib)
    recal = float(np.mean([top1(model(x), y) for x, y in held]))
    return {"batch_stats": batch_stats, "recalibrated": recal}


def setup():
    cfg = load_config(overrides=SETTINGS, base={"search": {}})
    space = get_space(SPACE)
    batches, held_batches = splits(cfg, space, HELD_BATCH)
    _, whole = splits(cfg, space, cfg.search.heldout)
    return cfg, space, batches, held_batches, whole


def run_worker(worker: str, out: Path) -> None:
    torch.set_num_threads(1)
    cfg, space, batches, held_batches, whole = setup()
    state = State(out / f"state-{worker.replace(':', '-').replace(',', '-')}.json")
    archs = state.data.get("archs") or state.put("archs", architectures(space))
    if worker.startswith("alone"):
        seed = int(worker[len("alone"):])
        held = whole(0)
        for i, a in enumerate(archs):
            key = f"alone/{seed}/{i}"
            if key in state.data:
                continue
            t0 = time.time()
            acc = train_briefly(space.fix(a["decision"]), batches, held, ALONE_STEPS, cfg.train.lr, seed)
            state.put(key, {"top1": acc, "seconds": time.time() - t0})
            print(f"{key}: {acc:.4f} ({time.time() - t0:.0f} s)", flush=True)
        return
    held = [held_batches(i) for i in range(cfg.search.heldout // HELD_BATCH)]
    calib = [batches(s)[0] for s in range(4)]
    names = worker.split(":", 1)[1].split(",") if ":" in worker else list(SUPERNETS)
    for name in names:
        steps, warm = SUPERNETS[name]
        if f"supernet/{name}" in state.data:
            continue
        t0 = time.time()
        net = train_supernet(space, cfg, batches, steps, warm)
        trained = time.time() - t0
        rows = [estimates(net, a["decision"], held, calib) for a in archs]
        state.put(f"supernet/{name}", {"steps": steps, "tunas_warmup": warm, "train_seconds": trained,
                                       "estimates": rows})
        print(f"supernet {name}: {trained:.0f} s", flush=True)


def report(out: Path, record: str) -> None:
    from scipy.stats import kendalltau

    states = {}
    for path in sorted(out.glob("state-*.json")):
        states.update(json.loads(path.read_text()))
    archs = states["archs"]
    alone = np.array([[states[f"alone/{s}/{i}"]["top1"] for i in range(len(archs))] for s in SEEDS])
    mean = alone.mean(0)
    seeds_tau = kendalltau(alone[0], alone[1])
    latency = [a["edgetpu_ms"] for a in archs]  # does a ranking just follow size?
    top = set(np.argsort(-mean)[:5])
    rows = []
    for name in SUPERNETS:
        sn = states.get(f"supernet/{name}")
        if sn is None:
            continue
        for est in ("batch_stats", "recalibrated"):
            v = np.array([r[est] for r in sn["estimates"]])
            t = kendalltau(v, mean)
            rows.append({"supernet": name, "estimator": est, "kendall_tau": float(t.statistic),
                         "p_value": float(t.pvalue), "top5_overlap": len(top & set(np.argsort(-v)[:5])),
                         "tau_with_latency": float(kendalltau(v, latency).statistic),
                         "range": [float(v.min()), float(v.max())], "train_seconds": sn["train_seconds"],
                         "steps": sn["steps"]})
    rec = {"what": "one-shot fidelity on small-28: supernet estimates against stand-alone top-1 (2 seeds)",
           "settings": SETTINGS, "alone_steps": ALONE_STEPS, "archs": archs,
           "stand_alone": alone.tolist(), "stand_alone_mean": mean.tolist(),
           "stand_alone_range": [float(mean.min()), float(mean.max())],
           "alone_seconds_total": sum(states[f"alone/{s}/{i}"]["seconds"] for s in SEEDS for i in range(len(archs))),
           "seed_agreement": {"kendall_tau": float(seeds_tau.statistic), "p_value": float(seeds_tau.pvalue)},
           "stand_alone_tau_with_latency": float(kendalltau(mean, latency).statistic),
           "variants": rows}
    write_record(record, rec, threads=1)
    print(f"stand-alone top-1 {mean.min():.4f}-{mean.max():.4f}; seed 0 vs seed 1: Kendall tau "
          f"{seeds_tau.statistic:.3f} (p {seeds_tau.pvalue:.2g})")
    print(f"stand-alone top-1 against edgetpu latency: Kendall tau {rec['stand_alone_tau_with_latency']:.3f}")
    print(f"{'supernet':<14} {'estimator':<13} {'tau':>6} {'p':>8} {'top-5':>5} {'range':>13} {'tau/lat':>7} "
          f"{'train s':>8}")
    for r in rows:
        print(f"{r['supernet']:<14} {r['estimator']:<13} {r['kendall_tau']:>6.3f} {r['p_value']:>8.2g} "
              f"{r['top5_overlap']:>5} {r['range'][0]:>6.3f}-{r['range'][1]:.3f} {r['tau_with_latency']:>7.3f} "
              f"{r['train_seconds']:>8.0f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", help="alone0 | alone1 | supernets[:name,name]")
    ap.add_argument("--report", action="store_true")
    ap.add_argument("--out", default="runs/bench_fidelity")
    ap.add_argument("--record", default="bench/results/fidelity.json")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.worker:
        run_worker(args.worker, out)
    if args.report:
        report(out, args.record)


if __name__ == "__main__":
    main()
