"""One-shot fidelity: does the supernet rank architectures as training them alone does? (issue 15)

Two sets (``--set``, ``SETS``). ``small-28``: 20 architectures of ``small-28`` spread over its edgetpu latency
range (300 sampled, sorted by predicted latency, evenly spaced picks). ``v2-224``: 10 architectures of
``edgetpu-v2-224`` spread over its edgetpu range at 224 px, trained and estimated under the proxy of
``configs/quickstart.yaml`` (Fashion-MNIST at 32x32, batch 64, 12,000 images with 2,000 held out), against a
supernet trained as the quickstart's search trains its weights (300 steps, TuNAS's warm-up). Each architecture
is trained stand-alone for the set's ``alone_steps`` with two seeds; the two seeds' agreement (Kendall tau)
says how far the stand-alone ranking itself can be trusted. Against their mean, each supernet variant's
estimates are ranked: Kendall tau with its p-value and the top-k overlap (top 5 of 20, top 3 of 10).

Stand-alone protocols (``PROTOCOLS``): ``zero_head`` starts the classifier at zero, as the supernet does and as
``train_briefly`` now does; ``google_init`` is Google's dense initialisation, the first protocol measured, whose
initial logits grow with the head's width.

Supernet variants (same data, batch, lr, steps unless named; weights only, no controller, so what is measured
is the shared weights' ranking, which TuNAS's controller reads):

  uniform        every step a uniformly sampled architecture (fair path sampling throughout)
  tunas_warmup   uniform sampling with TuNAS's warm-up over the first 25%: all ops of a position summed and the
                 widest filters, each with a probability falling from 1 to 0 (what the search does before its
                 controller starts)
  uniform_long   uniform, twice the steps
  separate_e     uniform, 1,000 steps, one weight set per expansion ratio (``Supernet(separate=...)``)
  separate_ek    the same per expansion ratio and kernel size

Estimators: ``batch_stats`` (TuNAS: BatchNorm with the held-out batch's statistics, batches of 192),
``recalibrated`` (the extracted model with its BatchNorm statistics recalibrated on 4 training batches, then
evaluated in eval mode) and ``finetune`` (the extracted model trained alone for ``FINETUNE_STEPS`` first).

Resumable: each unit (a stand-alone training, a supernet) is stored in OUT/state-<worker>.json as it ends, and
each supernet's weights in OUT/supernet-<name>.pt (OUT: the set's folder under runs/). One worker per core:

    python bench/fidelity.py --worker alone0[:zero_head|google_init]     # seed 0's 20 trainings
    python bench/fidelity.py --worker alone1[:zero_head|google_init]
    python bench/fidelity.py --worker supernets:uniform,separate_e        # train, keep weights, estimate
    python bench/fidelity.py --worker finetune:uniform                    # the finetune estimator
    python bench/fidelity.py --report                                     # the record, from what has run
    python bench/fidelity.py --set v2-224 --worker alone0                 # the same for the other set
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from common import parser  # bench/ is on the path when a bench script runs
from edgenas.config import load_config
from edgenas.env import write_record
from edgenas.eval.metrics import top1
from edgenas.io import write_atomic
from edgenas.latency import get_latency_model
from edgenas.search.baselines import train_briefly
from edgenas.search.proxy import splits, task_space
from edgenas.search.supernet import Supernet, recalibrate_bn
from edgenas.search.tunas import step_generator, warmup_paths
from edgenas.space import get_space
from edgenas.train.schedule import lr_factor


@dataclass(frozen=True)
class FidelitySet:
    space: str  # architectures are drawn and priced here; trained on its task space (a proxy where they differ)
    archs: int
    pool: int
    alone_steps: int
    settings: list
    supernets: dict  # name: (steps, TuNAS warm-up, fields with separate weights per option)
    held_batch: int
    top_k: int
    out: str
    record: str


SEEDS = (0, 1)
SETS = {
    "small-28": FidelitySet(
        "small-28", 20, 300, 300,
        ["data.train_subset=20000", "search.heldout=2000", "train.batch_size=48", "data.augment=none",
         "train.lr=0.05", "train.grad_clip=5", "train.threads=1"],
        {"uniform": (500, False, ()), "tunas_warmup": (500, True, ()), "uniform_long": (1000, False, ()),
         "separate_e": (1000, False, ("expand_ratio",)),
         "separate_ek": (1000, False, ("expand_ratio", "kernel_size"))},
        192, 5, "runs/bench_fidelity", "bench/results/fidelity.json"),
    # configs/quickstart.yaml's proxy and its search's 300 steps
    "v2-224": FidelitySet(
        "edgetpu-v2-224", 10, 200, 300,
        ["data.train_subset=12000", "search.heldout=2000", "train.batch_size=64", "data.augment=none",
         "train.lr=0.05", "train.grad_clip=5", "train.threads=1", "search.input_size=32"],
        {"tunas_warmup": (300, True, ())},
        200, 3, "runs/bench_fidelity_224", "bench/results/fidelity_224.json"),
}
# Stand-alone protocols: the classifier starting at zero (as the supernet's does) or at Google's dense init.
PROTOCOLS = {"zero_head": True, "google_init": False}
FINETUNE_STEPS, FINETUNE_LR = 30, 0.01  # the "finetune" estimator: each path trained alone a little first


class State:
    def __init__(self, path: Path):
        self.path = path
        self.data = json.loads(path.read_text()) if path.is_file() else {}

    def put(self, key, value):
        self.data[key] = value
        write_atomic(self.path, json.dumps(self.data, indent=1))
        return value


def architectures(fs: FidelitySet) -> list[dict]:
    """``fs.archs`` decisions spread evenly over the sampled edgetpu latency range of ``fs.space`` (seeded)."""
    edgetpu, space = get_latency_model("edgetpu"), get_space(fs.space)
    rng = np.random.default_rng(2026)
    pool = [space.sample(rng) for _ in range(fs.pool)]
    priced = sorted(((edgetpu.predict(space.fix(d)).total, i) for i, d in enumerate(pool)))
    picks = np.linspace(0, len(priced) - 1, fs.archs).round().astype(int)
    return [{"decision": pool[priced[p][1]], "edgetpu_ms": priced[p][0]} for p in picks]


def train_supernet(space, cfg, batches, steps: int, tunas_warmup: bool, separate: tuple = ()) -> Supernet:
    torch.manual_seed(0)
    net = Supernet(space, separate).train()
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


def finetuned(net: Supernet, decision: dict, batches, held: list, cfg) -> float:
    """The path extracted with the shared weights, trained alone for ``FINETUNE_STEPS`` steps (cosine from
    ``FINETUNE_LR``, batches the supernet did not see first), BatchNorm recalibrated, then scored."""
    model = net.extract(decision).train()
    opt = torch.optim.SGD(model.parameters(), lr=FINETUNE_LR, momentum=0.9, nesterov=True)
    for step in range(FINETUNE_STEPS):
        for group in opt.param_groups:
            group["lr"] = FINETUNE_LR * lr_factor(step, FINETUNE_STEPS)
        x, y = batches(100_000 + step)
        loss = F.cross_entropy(model(x), y, label_smoothing=cfg.train.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    recalibrate_bn(model, [batches(s)[0] for s in range(4)])
    with torch.no_grad():
        return float(np.mean([top1(model(x), y) for x, y in held]))


def setup(fs: FidelitySet):
    """The config, the task space (decisions of ``fs.space``, trained on the data) and its batches."""
    cfg = load_config(overrides=fs.settings, base={"search": {}})
    space = task_space(cfg, get_space(fs.space))
    batches, held_batches = splits(cfg, space, fs.held_batch)
    _, whole = splits(cfg, space, cfg.search.heldout)
    return cfg, space, batches, held_batches, whole


def alone_key(protocol: str, seed: int, i: int) -> str:
    return f"alone/{seed}/{i}" if protocol == "google_init" else f"alone-{protocol}/{seed}/{i}"


def run_worker(fs: FidelitySet, worker: str, out: Path) -> None:
    torch.set_num_threads(1)
    cfg, space, batches, held_batches, whole = setup(fs)
    kind, _, arg = worker.partition(":")
    if kind.startswith("alone"):
        seed, protocol = int(kind[len("alone"):]), arg or "zero_head"
        state = State(out / f"state-alone{seed}-{protocol}.json")
    else:
        state = State(out / f"state-{worker.replace(':', '-').replace(',', '-')}.json")
    archs = state.data.get("archs") or state.put("archs", architectures(fs))
    if kind.startswith("alone"):
        held = whole(0)
        for i, a in enumerate(archs):
            key = alone_key(protocol, seed, i)
            if key in state.data:
                continue
            t0 = time.time()
            acc = train_briefly(space.fix(a["decision"]), batches, held, fs.alone_steps, cfg.train.lr, seed,
                                zero_head=PROTOCOLS[protocol])
            state.put(key, {"top1": acc, "seconds": time.time() - t0})
            print(f"{key}: {acc:.4f} ({time.time() - t0:.0f} s)", flush=True)
        return
    held = [held_batches(i) for i in range(cfg.search.heldout // fs.held_batch)]
    names = arg.split(",") if arg else list(fs.supernets)
    if kind == "finetune":  # on supernets already trained (their weights are kept in OUT)
        for name in names:
            key = f"finetune/{name}"
            if key in state.data:
                continue
            steps, warm, separate = fs.supernets[name]
            weights = out / f"supernet-{name}.pt"
            if weights.is_file():
                net = Supernet(space, separate)
                net.load_state_dict(torch.load(weights))
            else:  # trained before its weights were kept: training is seeded, so train it again
                net = train_supernet(space, cfg, batches, steps, warm, separate)
                torch.save(net.state_dict(), weights)
            t0 = time.time()
            state.put(key, {"estimates": [finetuned(net, a["decision"], batches, held, cfg) for a in archs],
                            "seconds": time.time() - t0})
            print(f"{key}: {time.time() - t0:.0f} s", flush=True)
        return
    calib = [batches(s)[0] for s in range(4)]
    for name in names:
        steps, warm, separate = fs.supernets[name]
        if f"supernet/{name}" in state.data:
            continue
        t0 = time.time()
        net = train_supernet(space, cfg, batches, steps, warm, separate)
        trained = time.time() - t0
        torch.save(net.state_dict(), out / f"supernet-{name}.pt")
        rows = [estimates(net, a["decision"], held, calib) for a in archs]
        state.put(f"supernet/{name}", {"steps": steps, "tunas_warmup": warm, "separate": list(separate),
                                       "train_seconds": trained, "estimates": rows})
        print(f"supernet {name}: {trained:.0f} s", flush=True)


def report(fs: FidelitySet, out: Path, record: str) -> None:
    from scipy.stats import kendalltau

    states = {}
    for path in sorted(out.glob("state-*.json")):
        states.update(json.loads(path.read_text()))
    archs = states["archs"]
    latency = [a["edgetpu_ms"] for a in archs]  # does a ranking just follow size?
    head = [a["decision"]["head.conv_channels"] for a in archs]
    k = fs.top_k
    truth = {}
    for protocol in PROTOCOLS:
        keys = [[alone_key(protocol, s, i) for i in range(len(archs))] for s in SEEDS]
        if not all(k in states for row in keys for k in row):
            continue
        alone = np.array([[states[k]["top1"] for k in row] for row in keys])
        mean = alone.mean(0)
        agree = kendalltau(alone[0], alone[1])
        truth[protocol] = {
            "top1": alone.tolist(), "mean": mean.tolist(), "range": [float(mean.min()), float(mean.max())],
            "seconds_total": sum(states[k]["seconds"] for row in keys for k in row),
            "seed_agreement": {"kendall_tau": float(agree.statistic), "p_value": float(agree.pvalue)},
            "tau_with_latency": float(kendalltau(mean, latency).statistic),
            "tau_with_head_width": float(kendalltau(mean, head).statistic)}
    rows = []
    for name, (steps, warm, separate) in fs.supernets.items():
        sn = states.get(f"supernet/{name}")
        if sn is None:
            continue
        ests = {e: [r[e] for r in sn["estimates"]] for e in ("batch_stats", "recalibrated")}
        if f"finetune/{name}" in states:
            ests["finetune"] = states[f"finetune/{name}"]["estimates"]
        for est, v in ests.items():
            v = np.array(v)
            row = {"supernet": name, "estimator": est, "steps": sn["steps"], "tunas_warmup": warm,
                   "separate": list(separate), "train_seconds": sn["train_seconds"],
                   "range": [float(v.min()), float(v.max())],
                   "tau_with_latency": float(kendalltau(v, latency).statistic)}
            if est == "finetune":
                row["finetune_seconds"] = states[f"finetune/{name}"]["seconds"]
            for protocol, t in truth.items():
                tau = kendalltau(v, t["mean"])
                top = set(np.argsort(-np.array(t["mean"]))[:k])
                row[protocol] = {"kendall_tau": float(tau.statistic), "p_value": float(tau.pvalue),
                                 f"top{k}_overlap": len(top & set(np.argsort(-v)[:k]))}
            rows.append(row)
    rec = {"what": f"one-shot fidelity on {fs.space}: supernet estimates against stand-alone top-1 (2 seeds)",
           "settings": fs.settings, "alone_steps": fs.alone_steps, "finetune_steps": FINETUNE_STEPS,
           "finetune_lr": FINETUNE_LR, "archs": archs, "stand_alone": truth, "variants": rows}
    write_record(record, rec, threads=1)
    for protocol, t in truth.items():
        a = t["seed_agreement"]
        print(f"stand-alone ({protocol}): top-1 {t['range'][0]:.4f}-{t['range'][1]:.4f}; seed 0 vs 1 tau "
              f"{a['kendall_tau']:.3f} (p {a['p_value']:.2g}); tau with latency {t['tau_with_latency']:.3f}, "
              f"with head width {t['tau_with_head_width']:.3f}")
    print(f"{'supernet':<13} {'estimator':<13} " + " ".join(f"{p + ' tau':>16} {'p':>8} {f'top{k}':>4}" for p in truth)
          + f" {'range':>13} {'tau/lat':>7} {'train s':>8}")
    for r in rows:
        cells = " ".join(f"{r[p]['kendall_tau']:>16.3f} {r[p]['p_value']:>8.2g} {r[p][f'top{k}_overlap']:>4}"
                         for p in truth)
        print(f"{r['supernet']:<13} {r['estimator']:<13} {cells} {r['range'][0]:>6.3f}-{r['range'][1]:.3f} "
              f"{r['tau_with_latency']:>7.3f} {r['train_seconds']:>8.0f}")


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--worker", help="alone<seed>[:zero_head|google_init] | supernets[:name,...] | "
                                     "finetune[:name,...]")
    ap.add_argument("--report", action="store_true")
    ap.add_argument("--set", default="small-28", choices=list(SETS))
    ap.add_argument("--out", help="default: the set's folder under runs/")
    ap.add_argument("--record", help="default: the set's record under bench/results/")
    args = ap.parse_args()
    fs = SETS[args.set]
    out = Path(args.out or fs.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.worker:
        run_worker(fs, args.worker, out)
    if args.report:
        report(fs, out, args.record or fs.record)


if __name__ == "__main__":
    main()
