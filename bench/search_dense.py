"""The segmentation and detection search benchmarks of docs/benchmarks.md (issue 16), resumable unit by unit.

    python bench/search_dense.py [--phases targets,longer,equal,aware,jobs] [--spaces autoseg-512,spaghetti-320]
                                 [--out runs/bench_dense] [--smoke]

targets  TuNAS with the job's settings (configs/search_seg.yaml, configs/search_det.yaml, no retraining) for
         three edgetpu targets per space: the final (most likely) architecture's predicted latency against the
         target; each search's wall time against one training of its result for the same steps (cost).
longer   each target missed by more than 5%, searched again for twice the job's steps.
equal    at the zoo point's own predicted latency (Autoseg-EdgeTPU-XS, SpaghettiNet-EdgeTPU-S): TuNAS's winner
         against that zoo model and the best of random search given the TuNAS search's wall time, each trained
         from scratch with one budget on the same proxy task (``FINAL_EPOCHS``), 2 seeds, mean and spread of
         the task's validation metric (mIoU, mAP), with the last epoch's training loss beside it.
aware    the edgetpu-targeted winner against a MACs-targeted search at the same MACs: block types per level
         (Autoseg) or op types per node, head depth and where grouped convs land (SpaghettiNet).
jobs     each space's job as a user runs it, `edgenas search --config configs/search_seg.yaml` (and _det),
         search, retraining, evaluation, export and report included: its wall time against the 15 minutes.

``--smoke`` runs every phase with tiny settings into OUT-smoke, to check the script. Results:
bench/results/search_dense.json (not written by --smoke). Do not run anything else on the machine meanwhile:
the search and the baselines' budget are wall time.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from common import epochs, parser  # bench/ is on the path when a bench script runs
from edgenas.config import load_config
from edgenas.env import write_record
from edgenas.latency import get_latency_model
from edgenas.models import get_arch
from edgenas.search.baselines import best, make_evaluator, run_baseline, train_briefly
from edgenas.search.objective import objective
from edgenas.search.proxy import splits, task_space
from edgenas.search import search
from edgenas.space import get_space
from edgenas.spec import count
from search_benchmarks import State  # bench/ is on the path when a bench script runs

CONFIGS = {"autoseg-512": "configs/search_seg.yaml", "spaghetti-320": "configs/search_det.yaml"}
ZOO = {"autoseg-512": "autoseg_edgetpu_xs", "spaghetti-320": "spaghettinet_edgetpu_s"}
# ms on edgetpu: the zoo point's own predicted latency (configs) and one target either side of it
TARGETS = {"autoseg-512": (2.8, 3.224, 4.0), "spaghetti-320": (1.1, 1.295, 1.6)}
SEEDS, TRIAL_STEPS, FINAL_EPOCHS = (0, 1), 40, 4
SMOKE = ["search.steps=4", "search.heldout=8", "search.rl_batch=4", "search.input_size=64", "train.batch_size=4",
         "data.train_subset=24", "data.val_subset=8", "search.checkpoint_every=2"]


class Bench:
    def __init__(self, root: Path, smoke: bool):
        self.root, self.smoke = root, smoke
        self.state = State(root / "state.json")

    def cfg(self, space: str, out: str, *more: str):
        return load_config(CONFIGS[space], ["search.retrain_epochs=0", f"out={self.root / out}", *more]
                           + (SMOKE if self.smoke else []))

    def tunas(self, space: str, target: str, ms: float, seed: int, steps: int | None = None) -> dict:
        """One search, stored once: its decision, predicted latency and wall time (all its steps, resumes
        included: the phase timers); ``steps`` other than the job's own are part of its key."""
        key = f"search/{space}/{target}/{ms:g}/{seed}" + (f"/{steps}steps" if steps else "")
        if not self.state.get(key):
            cfg = self.cfg(space, key.replace("/", "-"), f"search.target={target}", f"search.latency_target={ms}",
                           f"train.seed={seed}", *([f"search.steps={steps}"] if steps else []))
            t0 = time.time()
            r = search(cfg, resume=True, progress=False)
            self.state.put(key, {"decision": r["decision"], "predicted_latency": r["predicted_latency"],
                                 "target": ms, "target_error": r["target_error"], "unit": r["unit"],
                                 "seconds": sum(r["phase_seconds"].values()), "wall_seconds": time.time() - t0,
                                 "supernet_quality": r["supernet_quality"]})
            print(f"{key}: {r['predicted_latency']:.4g} {r['unit']} ({r['target_error']:+.1%})", flush=True)
        return self.state.get(key)

    def one_training(self, space: str, decision: dict, steps: int, seed: int) -> float:
        """Seconds to train the decision's network on the proxy task for ``steps`` weight steps, as the
        search's weight steps train the supernet (same batches, objective and learning rate)."""
        cfg = self.cfg(space, "cost", f"train.seed={seed}")
        task = task_space(cfg, get_space(space))
        batches, held = splits(cfg, task, cfg.search.rl_batch)
        spec = task.fix(decision)
        t0 = time.time()
        train_briefly(spec, batches, held(0), steps, cfg.train.lr, seed, objective=objective(cfg, spec))
        return time.time() - t0

    def final(self, key: str, space: str, decision: dict, seed: int) -> dict:
        """The decision's network trained from scratch on the proxy task for FINAL_EPOCHS, its validation
        quality (the task's metric, %), stored once."""
        if not self.state.get(key):
            from edgenas.search.job import training_config
            from edgenas.tasks import get_task
            from edgenas.train.loop import fit

            cfg = self.cfg(space, "unused", f"train.seed={seed}")
            spec = task_space(cfg, get_space(space)).fix(decision)
            out = self.root / key.replace("/", "-")
            out.mkdir(parents=True, exist_ok=True)
            rcfg = training_config(cfg, spec, out / "arch.yaml", 1 if self.smoke else FINAL_EPOCHS, out / "train")
            record = fit(rcfg, get_task(rcfg), resume=True)[-1]
            latency = get_latency_model("edgetpu").predict(get_space(space).fix(decision)).total
            self.state.put(key, {"quality": record["val_quality"], "latency": latency})
            print(f"{key}: {record['val_quality']:.2f}% at {latency:.4g} ms", flush=True)
        got = self.state.get(key)
        if "train_loss" not in got:  # the last epoch's training loss, from the training's own log
            log = self.root / key.replace("/", "-") / "train" / "metrics.jsonl"
            self.state.put(key, {**got, "train_loss": epochs(log, "train_loss")[-1]["train_loss"]})
        return self.state.get(key)


def phase_targets(b: Bench, spaces) -> dict:
    out = {}
    for space in spaces:
        rows = []
        for ms in TARGETS[space]:
            r = b.tunas(space, "edgetpu", ms, 0)
            key = f"cost/{space}/{ms:g}"
            if not b.state.get(key):
                steps = b.cfg(space, "unused").search.steps
                b.state.put(key, {"train_seconds": b.one_training(space, r["decision"], steps, 0)})
            rows.append({"target": ms, "predicted_latency": r["predicted_latency"], "target_error": r["target_error"],
                         "search_seconds": r["seconds"], "train_seconds": b.state.get(key)["train_seconds"],
                         "cost_ratio": r["seconds"] / b.state.get(key)["train_seconds"]})
        out[space] = rows
    return out


def phase_longer(b: Bench, spaces) -> dict:
    """Each target the job's steps missed by more than 5%, searched again for twice the steps (seed 0)."""
    out = {}
    for space in spaces:
        steps = 2 * b.cfg(space, "unused").search.steps
        rows = []
        for ms in TARGETS[space]:
            if abs(b.tunas(space, "edgetpu", ms, 0)["target_error"]) > 0.05:
                r = b.tunas(space, "edgetpu", ms, 0, steps)
                rows.append({"target": ms, "steps": steps, "predicted_latency": r["predicted_latency"],
                             "target_error": r["target_error"], "search_seconds": r["seconds"]})
        out[space] = rows
    return out


def phase_equal(b: Bench, spaces) -> dict:
    out = {}
    for space in spaces:
        s, ms, rows = get_space(space), TARGETS[space][1], []
        zoo = s.match(get_arch(ZOO[space]))
        for seed in SEEDS:
            tunas = b.tunas(space, "edgetpu", ms, seed)
            key = f"equal/{space}/random/{seed}"
            if not b.state.get(key):
                cfg = b.cfg(space, "unused", f"search.latency_target={ms}", f"train.seed={seed}")
                evaluate = make_evaluator(cfg, s, get_latency_model("edgetpu"), 2 if b.smoke else TRIAL_STEPS,
                                          task=task_space(cfg, s))
                t0 = time.time()
                trials = run_baseline("random", s, evaluate, 10_000, ms, seed=seed, budget_seconds=tunas["seconds"])
                w = best(trials)
                b.state.put(key, {"decision": w.decision, "trials": len(trials), "seconds": time.time() - t0})
            for method, decision in (("tunas", tunas["decision"]), ("random", b.state.get(key)["decision"]),
                                     ("zoo", zoo)):
                got = b.final(f"equal/{space}/final/{method}/{seed}", space, decision, seed)
                rows.append({"method": method, "seed": seed, **got})
        summary = {m: {"quality_mean": float(np.mean([r["quality"] for r in rows if r["method"] == m])),
                       "quality_spread": float(np.ptp([r["quality"] for r in rows if r["method"] == m])),
                       "train_loss_mean": float(np.mean([r["train_loss"] for r in rows if r["method"] == m])),
                       "latency_mean": float(np.mean([r["latency"] for r in rows if r["method"] == m]))}
                   for m in ("tunas", "random", "zoo")}
        out[space] = {"target": ms, "zoo": ZOO[space], "rows": rows, "summary": summary}
    return out


def structure(space: str, decision: dict) -> dict:
    """Where the ops are: Autoseg's block types per backbone level and its head; SpaghettiNet's op types in
    the backbone and head nodes, the head's depth and where grouped convs (groups > 1) land."""
    spec = get_space(space).fix(decision)
    if space == "autoseg-512":
        levels, reduction = {}, 2
        for stage in spec.backbone.stages:
            for block in stage.blocks:
                reduction *= block.stride
                levels.setdefault(f"stride {reduction}", Counter())[block.type] += 1
        bifpn = [n for n in spec.nodes if n.name.startswith("cell")]
        return {"blocks_per_level": {k: dict(v) for k, v in levels.items()}, "bifpn_nodes": len(bifpn),
                "head_channels": bifpn[0].ops[0].out_channels if bifpn else None}
    part = lambda n: "head" if n.name.startswith("c0") else "backbone"  # noqa: E731
    ops = {"backbone": Counter(), "head": Counter()}
    for node in spec.nodes:
        ops[part(node)].update(op.type for op in node.ops)
    grouped = dict(Counter(n.name for n in spec.nodes for op in n.ops if getattr(op, "groups", 1) > 1))
    return {"ops": {k: dict(v) for k, v in ops.items()}, "grouped_conv_nodes": grouped,
            "head_ops": sum(len(n.ops) for n in spec.nodes if part(n) == "head"),
            "macs": count(spec).macs}


def phase_aware(b: Bench, spaces) -> dict:
    out = {}
    for space in spaces:
        tpu = b.tunas(space, "edgetpu", TARGETS[space][1], 0)
        mmacs = count(get_space(space).fix(tpu["decision"])).macs / 1e6
        macs = b.tunas(space, "macs", round(mmacs, 1), 0)
        out[space] = {"edgetpu": {"result": tpu, **structure(space, tpu["decision"])},
                      "macs": {"result": macs, **structure(space, macs["decision"])}}
    return out


def phase_jobs(b: Bench, spaces) -> dict:
    """Each space's job as a user runs it (``edgenas search --config ...``: data, search, retraining,
    evaluation, ONNX export, report), wall time from process start to exit, and the lines it prints."""
    out = {}
    for space in spaces:
        key = f"job/{space}"
        if not b.state.get(key):
            folder = b.root / f"job-{space}"
            shutil.rmtree(folder, ignore_errors=True)  # a job timed whole, never resumed
            cmd = [sys.executable, "-m", "edgenas", "search", "--config", CONFIGS[space], "--out", str(folder)]
            if b.smoke:
                cmd += [x for o in [*SMOKE, "search.retrain_epochs=1"] for x in ("--set", o)]
            t0 = time.time()
            done = subprocess.run(cmd, capture_output=True, text=True)
            seconds = time.time() - t0
            if done.returncode:
                raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
            r = json.loads((folder / "result.json").read_text())
            b.state.put(key, {"wall_seconds": seconds, "search_seconds": sum(r["phase_seconds"].values()),
                              "retrain_seconds": r["retrained"]["seconds"], "predicted_latency": r["predicted_latency"],
                              "target_error": r["target_error"], "retrained_quality": r["retrained"]["quality"],
                              "quality_label": r["retrained"]["quality_label"], "stdout": done.stdout.splitlines()})
            print(f"{key}: {seconds:.0f} s", flush=True)
        out[space] = b.state.get(key)
    return out


PHASES = {"targets": phase_targets, "longer": phase_longer, "equal": phase_equal, "aware": phase_aware,
          "jobs": phase_jobs}


def main() -> None:
    ap = parser(__doc__, record="bench/results/search_dense.json", record_flag="--json",
                work="runs/bench_dense")
    ap.add_argument("--phases", default=",".join(PHASES))
    ap.add_argument("--spaces", default=",".join(CONFIGS))
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    b = Bench(Path(args.out + ("-smoke" if args.smoke else "")), args.smoke)
    spaces = args.spaces.split(",")
    results = json.loads(Path(args.json).read_text()) if Path(args.json).is_file() and not args.smoke else {}
    for phase in args.phases.split(","):
        results[phase] = PHASES[phase](b, spaces)
        results["settings"] = {"configs": CONFIGS, "targets": TARGETS, "seeds": SEEDS, "trial_steps": TRIAL_STEPS,
                               "final_epochs": FINAL_EPOCHS, "zoo": ZOO}
        if not args.smoke:
            write_record(args.json, results, threads=2)
        print(f"{phase}: done", flush=True)
    if args.smoke:
        print(json.dumps(results, indent=1, default=str)[:3000])


if __name__ == "__main__":
    main()
