"""The search benchmarks of docs/benchmarks.md, sized to a 2-core CPU, resumable phase by phase.

    python bench/search_benchmarks.py [--phases targets,cost,histogram,tau,equal] [--out runs/bench_search]

targets    TuNAS on small-28 (quality from Fashion-MNIST) for three targets on each of edgetpu and cpu-ort:
           the most likely architecture's predicted latency against the target.
converge   every target missed by more than 5%, searched again with twice the steps (LONG_STEPS).
cost       each of those searches' wall time against training its final architecture alone for the same
           weight steps and batch (TuNAS reports a search costs 1-2x one training).
histogram  block types per stage of those results, edgetpu-targeted against cpu-targeted.
tau        one-shot sanity: Kendall tau between the supernet's held-out accuracy (the edgetpu 0.32 ms search's
           shared weights) and stand-alone accuracy after brief training, over 10 sampled architectures.
equal_compute  the same with the settings issue 15 left TuNAS with (EQUAL_TUNAS), random search and evolution
           each given the wall time of the TuNAS search of the same seed, 3 seeds.
equal      quality at equal latency (edgetpu 0.32 ms): TuNAS vs the best of N random architectures vs
           regularized evolution (same reward, N brief trainings each) vs the zoo model (adapted to 28x28x1)
           nearest the target, each winner then trained with one budget; 2 seeds, mean and spread.
histogram224  the same at 224 px: configs/quickstart.yaml's proxy search for edgetpu and for MACs (the cost
           CPU latency tracks) at the edgetpu winner's MACs, at RL lr 0.1 (the quickstart's) and 0.05.

Every finished unit is stored in OUT/state.json and skipped when rerun; searches resume from their checkpoints.
Results: bench/results/search_benchmarks.json. Do not run anything else on the machine meanwhile: cpu-ort
measures layers it has not seen.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from common import parser  # bench/ is on the path when a bench script runs
from edgenas.config import load_config
from edgenas.env import write_record
from edgenas.io import write_atomic
from edgenas.latency import get_latency_model
from edgenas.models import get_arch, list_models
from edgenas.search.baselines import best, make_evaluator, run_baseline, train_briefly
from edgenas.search.supernet import Supernet
from edgenas.search.proxy import splits
from edgenas.search import search
from edgenas.space import get_space
from edgenas.spec import block_plan, count
from edgenas.data.shape import FASHION_MNIST
from edgenas.eval.metrics import top1
from edgenas.tasks.classification import adapt_arch

SPACE = "small-28"
TARGETS = {"edgetpu": [0.26, 0.32, 0.40], "cpu-ort": [1.2, 1.8, 2.6]}  # ms, inside the sampled ranges
SEARCH = ["data.train_subset=20000", "search.heldout=2000", "train.batch_size=48", "search.rl_batch=192",
          "search.steps=500", "search.rl_lr=0.05", "train.lr=0.05", "train.grad_clip=5", "data.augment=none",
          "train.threads=2", "search.checkpoint_every=50"]
LONG_STEPS = 1000  # twice search.steps above
EQUAL_TARGET, TRIALS, TRIAL_STEPS, FINAL_STEPS = 0.32, 8, 120, 420


class State:
    def __init__(self, path: Path):
        self.path = path
        self.data = json.loads(path.read_text()) if path.is_file() else {}

    def get(self, key):
        return self.data.get(key)

    def put(self, key, value):
        self.data[key] = value
        write_atomic(self.path, json.dumps(self.data, indent=1, default=str))
        return value


def search_cfg(out: Path, target: str, ms: float, seed: int = 0, steps: int | None = None, more: tuple = ()):
    return load_config(overrides=SEARCH + [f"search.space={SPACE}", f"search.target={target}",
                                           f"search.latency_target={ms}", f"train.seed={seed}", f"out={out}"]
                       + ([f"search.steps={steps}"] if steps else []) + list(more), base={"search": {}})


def run_search(state: State, root: Path, target: str, ms: float, seed: int = 0, steps: int | None = None,
               more: tuple = (), tag: str = "") -> dict:
    """``more``: settings on top of SEARCH, which the searches of a phase share under its ``tag``."""
    tag = (f"-{steps}steps" if steps else "") + (f"-{tag}" if tag else "")
    key = f"search/{target}/{ms}/{seed}{tag}"
    if state.get(key):
        return state.get(key)
    cfg = search_cfg(root / f"{target}-{ms}-s{seed}{tag}", target, ms, seed, steps, more)
    t0 = time.time()
    result = search(cfg, resume=True, progress=False)
    seconds = time.time() - t0
    print(f"{key}: {result['predicted_latency']:.4f} ms ({result['target_error']:+.1%}) in {seconds:.0f} s",
          flush=True)
    return state.put(key, {"decision": result["decision"], "arch": result["arch"], "seconds": seconds,
                           "predicted_latency": result["predicted_latency"], "target": ms,
                           "target_error": result["target_error"], "supernet_quality": result["supernet_quality"]})


def phase_targets(state, root):
    return {t: [run_search(state, root, t, ms) for ms in mss] for t, mss in TARGETS.items()}


def phase_converge(state, root):
    """Every target the 500-step search missed by more than 5%, searched again for twice the steps."""
    return {t: [run_search(state, root, t, ms, steps=LONG_STEPS) for ms in mss
                if abs(run_search(state, root, t, ms)["target_error"]) > 0.05] for t, mss in TARGETS.items()}


def phase_cost(state, root):
    rows = []
    space = get_space(SPACE)
    for target, mss in TARGETS.items():
        for ms in mss:
            key = f"cost/{target}/{ms}"
            if not state.get(key):
                s = run_search(state, root, target, ms)
                cfg = search_cfg(root / "cost", target, ms)
                batches, held = splits(cfg, space, cfg.search.heldout)
                torch.set_num_threads(2)
                t0 = time.time()
                train_briefly(space.fix(s["decision"]), batches, held(0), cfg.search.steps, cfg.train.lr, 0)
                alone = time.time() - t0
                state.put(key, {"search_seconds": s["seconds"], "train_seconds": alone,
                                "ratio": s["seconds"] / alone})
            rows.append({"target": target, "ms": ms, **state.get(key)})
    return rows


def block_types(arch, counts: dict) -> dict:
    """Add the arch's block types per stage into ``counts`` (stage 0, Google's fixed first block, left out)."""
    for pb in block_plan(arch):
        if pb.stage:
            stage = counts.setdefault(str(pb.stage), {})
            stage[pb.block.type] = stage.get(pb.block.type, 0) + 1
    return counts


def phase_histogram(state, root):
    out = {}
    for target, mss in TARGETS.items():
        counts: dict[str, dict[str, int]] = {}
        for ms in mss:
            block_types(get_space(SPACE).fix(run_search(state, root, target, ms)["decision"]), counts)
        out[target] = counts
    return out


def phase_tau(state, root):
    from scipy.stats import kendalltau

    if state.get("tau"):
        return state.get("tau")
    run_search(state, root, "edgetpu", 0.32)
    cfg = search_cfg(root / "edgetpu-0.32-s0", "edgetpu", 0.32)
    space = get_space(SPACE)
    supernet = Supernet(space)
    supernet.load_state_dict(torch.load(root / "edgetpu-0.32-s0" / "search_checkpoint.pt",
                                        weights_only=True)["supernet"])
    batches, held_batches = splits(cfg, space, cfg.search.rl_batch)
    held = [held_batches(i) for i in range(cfg.search.heldout // cfg.search.rl_batch)]
    _, whole = splits(cfg, space, cfg.search.heldout)
    rng = np.random.default_rng(123)
    decisions = [space.sample(rng) for _ in range(10)]
    rows = state.get("tau_rows") or []
    for d in decisions[len(rows):]:
        with torch.no_grad():
            supernet.train()
            one_shot = float(np.mean([top1(supernet(x, d), y) for x, y in held]))
        torch.set_num_threads(2)
        alone = train_briefly(space.fix(d), batches, whole(0), 300, cfg.train.lr, 0)
        rows.append({"decision": d, "one_shot": one_shot, "stand_alone": alone})
        state.put("tau_rows", rows)
        print(f"tau {len(rows)}/10: one-shot {one_shot:.3f} stand-alone {alone:.3f}", flush=True)
    tau = kendalltau([r["one_shot"] for r in rows], [r["stand_alone"] for r in rows])
    return state.put("tau", {"kendall_tau": float(tau.statistic), "p_value": float(tau.pvalue), "rows": rows})


def zoo_at_28(latency):
    """Zoo models as trained on Fashion-MNIST (28x28x1, stride-1 stem, 10 classes) with their latency."""
    out = []
    for name in list_models():
        a = adapt_arch(get_arch(name), FASHION_MNIST, stem_stride=1)
        out.append((name, a, latency.predict(a).total))
    return out


def baseline_winner(state, key: str, kind: str, space, evaluate, trials: int, seed: int,
                    budget_seconds: float | None = None) -> dict:
    """The best trial of a random or evolution run (2 threads), stored under ``key`` once."""
    if not state.get(key):
        torch.set_num_threads(2)
        t0 = time.time()
        ran = run_baseline(kind, space, evaluate, trials, EQUAL_TARGET, seed=seed, population=4,
                           budget_seconds=budget_seconds)
        b = best(ran)
        state.put(key, {"decision": b.decision, "quality": b.quality, "latency": b.latency,
                        "seconds": time.time() - t0, "trials": len(ran)})
        print(f"{key}: {len(ran)} trials, best {b.latency:.4f} ms, brief quality {b.quality:.3f}", flush=True)
    return state.get(key)


def final_training(state, key: str, arch, cfg, batches, latency, seed: int) -> dict:
    """A winner trained from scratch with the final budget and scored on the test images, stored once."""
    if not state.get(key):
        torch.set_num_threads(2)
        t0 = time.time()
        acc = train_briefly(arch, batches, _test_split(cfg, arch), FINAL_STEPS, cfg.train.lr, seed)
        state.put(key, {"top1": acc, "latency": latency.predict(arch).total, "macs": count(arch).macs,
                        "seconds": time.time() - t0})
        print(f"{key}: {acc:.4f} at {state.get(key)['latency']:.4f} ms", flush=True)
    return state.get(key)


def phase_equal(state, root):
    space = get_space(SPACE)
    latency = get_latency_model("edgetpu")
    zoo = zoo_at_28(latency)
    name, zoo_arch, zoo_ms = min(zoo, key=lambda z: abs(z[2] / EQUAL_TARGET - 1))
    rows = []
    for seed in (0, 1):
        cfg = search_cfg(root / "equal", "edgetpu", EQUAL_TARGET, seed)
        cfg = load_config(base=cfg.model_dump(mode="json"), overrides=["search.heldout=2000"])
        batches, held = splits(cfg, space, cfg.search.heldout)
        candidates = {}
        candidates["tunas"] = space.fix(run_search(state, root, "edgetpu", EQUAL_TARGET, seed)["decision"])
        evaluate = make_evaluator(cfg, space, latency, TRIAL_STEPS)
        for kind in ("random", "evolution"):
            got = baseline_winner(state, f"equal/{kind}/{seed}", kind, space, evaluate, TRIALS, seed)
            candidates[kind] = space.fix(got["decision"])
        candidates[f"zoo:{name}"] = zoo_arch
        for method, arch in candidates.items():
            final = final_training(state, f"equal/final/{method}/{seed}", arch, cfg, batches, latency, seed)
            rows.append({"method": method.split(":")[0], "model": method, "seed": seed, **final})
    summary = {}
    for method in ("tunas", "random", "evolution", "zoo"):
        accs = [r["top1"] for r in rows if r["method"] == method]
        lats = [r["latency"] for r in rows if r["method"] == method]
        summary[method] = {"top1_mean": float(np.mean(accs)), "top1_spread": float(np.ptp(accs)),
                           "latency_mean": float(np.mean(lats)), "seeds": len(accs)}
    return {"rows": rows, "summary": summary, "zoo_candidates": [(n, ms) for n, _, ms in zoo]}


# equal_compute: TuNAS with the 48-image held-out batch (bench/search_cost.py), against random search and
# evolution given the wall time of each TuNAS search (trials included), over three seeds; winners trained with
# one final budget
EQUAL_SEEDS, EQUAL_TUNAS = (0, 1, 2), ("search.rl_batch=48",)


def phase_equal_compute(state, root):
    space = get_space(SPACE)
    latency = get_latency_model("edgetpu")
    rows = []
    for seed in EQUAL_SEEDS:
        s = run_search(state, root, "edgetpu", EQUAL_TARGET, seed, more=EQUAL_TUNAS, tag="equal_compute")
        cfg = search_cfg(root / "equal_compute", "edgetpu", EQUAL_TARGET, seed, more=EQUAL_TUNAS)
        batches, _ = splits(cfg, space, cfg.search.heldout)
        candidates = {"tunas": (s["decision"], s["seconds"], 1)}
        evaluate = make_evaluator(cfg, space, latency, TRIAL_STEPS)
        for kind in ("random", "evolution"):
            got = baseline_winner(state, f"equal_compute/{kind}/{seed}", kind, space, evaluate, 10_000, seed,
                                  budget_seconds=s["seconds"])
            candidates[kind] = (got["decision"], got["seconds"], got["trials"])
        for method, (decision, search_seconds, trials) in candidates.items():
            final = final_training(state, f"equal_compute/final/{method}/{seed}", space.fix(decision), cfg,
                                   batches, latency, seed)
            rows.append({"method": method, "seed": seed, "search_seconds": search_seconds, "trials": trials,
                         **final, "target_error": final["latency"] / EQUAL_TARGET - 1})
    summary = {}
    for method in ("tunas", "random", "evolution"):
        accs = [r["top1"] for r in rows if r["method"] == method]
        summary[method] = {"top1_mean": float(np.mean(accs)), "top1_spread": float(np.ptp(accs)),
                           "top1_std": float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0,
                           "latency_mean": float(np.mean([r["latency"] for r in rows if r["method"] == method])),
                           "search_seconds_mean": float(np.mean([r["search_seconds"] for r in rows
                                                                 if r["method"] == method])),
                           "seeds": len(accs)}
    return {"rows": rows, "summary": summary, "tunas_settings": list(EQUAL_TUNAS), "seeds": list(EQUAL_SEEDS)}


def _test_split(cfg, arch):
    """The Fashion-MNIST test set (first 5000 images), transformed for evaluation."""
    from edgenas.tasks.classification import dataset

    test = dataset(cfg, arch, "val")
    n = min(5000, len(test))
    return torch.stack([test[i][0] for i in range(n)]), torch.tensor([test[i][1] for i in range(n)])


def phase_histogram224(state, root):
    """The proxy search of configs/quickstart.yaml (edgetpu-v2-224 at 224 px, no retraining) for edgetpu, and for
    MACs (the cost CPU latency tracks) at the edgetpu winner's MACs: block types per stage, at the quickstart's
    RL lr 0.1 and at 0.05."""
    out = {}
    for rl in (0.1, 0.05):
        for target in ("edgetpu", "macs"):
            key = f"h224/{target}/rl{rl}"
            if not state.get(key):
                ms = 1.2 if target == "edgetpu" else count(get_space("edgetpu-v2-224").fix(
                    state.get(f"h224/edgetpu/rl{rl}")["decision"])).macs / 1e6
                cfg = load_config("configs/quickstart.yaml", [
                    f"search.target={target}", f"search.latency_target={ms}", "search.retrain_epochs=0",
                    f"search.rl_lr={rl}", f"out={root / f'h224-{target}-rl{rl}'}"])
                t0 = time.time()
                r = search(cfg, resume=True, progress=False)
                state.put(key, {"decision": r["decision"], "predicted_latency": r["predicted_latency"], "target": ms,
                                "unit": r["unit"], "seconds": time.time() - t0})
                print(f"{key}: {r['predicted_latency']:.4g} {r['unit']} (target {ms:.4g})", flush=True)
            arch = get_space("edgetpu-v2-224").fix(state.get(key)["decision"])
            out[f"{target}/rl{rl}"] = {"result": state.get(key), "per_stage": block_types(arch, {})}
    return out


PHASES = {"targets": phase_targets, "cost": phase_cost, "histogram": phase_histogram, "tau": phase_tau,
          "equal": phase_equal, "converge": phase_converge, "histogram224": phase_histogram224,
          "equal_compute": phase_equal_compute}


def main() -> None:
    ap = parser(__doc__, record="bench/results/search_benchmarks.json", record_flag="--json",
                work="runs/bench_search")
    ap.add_argument("--phases", default=",".join(PHASES))
    ap.add_argument("--equal-seeds", help="equal_compute over these seeds only (comma-separated; default "
                    "0,1,2): a record of the seeds finished so far, which the summary says")
    args = ap.parse_args()
    if args.equal_seeds:
        global EQUAL_SEEDS
        EQUAL_SEEDS = tuple(int(v) for v in args.equal_seeds.split(","))
    root = Path(args.out)
    state = State(root / "state.json")
    results = json.loads(Path(args.json).read_text()) if Path(args.json).is_file() else {}
    for phase in args.phases.split(","):
        results[phase] = PHASES[phase](state, root)
        results["settings"] = {"space": SPACE, "search": SEARCH, "targets": TARGETS, "equal_target": EQUAL_TARGET,
                               "trials": TRIALS, "trial_steps": TRIAL_STEPS, "final_steps": FINAL_STEPS}
        write_record(args.json, results, threads=2)
        print(f"{phase}: done", flush=True)


if __name__ == "__main__":
    main()
