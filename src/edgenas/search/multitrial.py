"""Multi-trial search as a command (``search.strategy: random | evolution``): the baselines of
``search.baselines`` over the same space, reward, latency model and data splits as TuNAS, writing the same
results folder (result.json, arch.yaml, trace.jsonl, report.html) and retrained by the same job.

A trial trains its architecture (the proxy task's, as TuNAS scores quality) from scratch for
``search.trial_steps`` weight steps on the training split TuNAS trains its supernet on and scores top-1 on the
whole held-out split; its latency is priced on the space at the deployment size. Trials run in order on this
machine, or one Ray task each (``search.executor: ray``).

Resume: each finished trial is appended to OUT/trials.jsonl as it comes back (its first line holds the
settings, checked as TuNAS checks its checkpoint's). A resumed search replays the strategy from its seed and
takes the recorded result of every trial it has run, so it continues where the interrupted one stopped:
the decisions are a function of the seed and of the earlier trials' results.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..config import RunConfig
from ..io import open_folder, write_atomic
from ..latency import DEFAULT_CACHE, get_latency_model
from ..progress import Progress
from ..space import get_space
from ..spec import SpecError
from ..spec.datafile import parse_json
from .baselines import best, make_evaluator, ray_executor, run_baseline
from .objective import objective
from .proxy import task_space
from .record import chosen_record
from .resume import check_resumable, resume_settings

TRIALS = "trials.jsonl"


def _key(decision: dict) -> str:
    return json.dumps(decision, sort_keys=True, default=str)


class TrialLog:
    """OUT/trials.jsonl: a settings line, then one line per finished trial, appended and flushed as each
    comes back, so an interruption loses at most the trial that was running."""

    def __init__(self, path: Path, cfg: RunConfig, *, resume: bool):
        self.path, self.done = path, {}
        if path.is_file():
            if not resume:
                raise SpecError(f"{path.parent}: already holds a search ({TRIALS}); pass --resume to continue it or "
                                "choose another --out")
            lines = [parse_json(line, f"{path}:{n}") for n, line in enumerate(path.read_text().splitlines(), 1)
                     if line.strip()]
            if not lines or "settings" not in lines[0]:
                raise SpecError(f"{path}:1: not a trial log (no settings line); choose another --out")
            check_resumable(path, {"settings": lines[0]["settings"]}, cfg, 1)
            self.done = {_key(r["decision"]): (r["quality"], r["latency"]) for r in lines[1:]}
        else:
            write_atomic(path, json.dumps({"settings": resume_settings(cfg)}) + "\n")

    def add(self, decision: dict, result: tuple[float, float]) -> None:
        self.done[_key(decision)] = result
        with open(self.path, "a") as f:
            f.write(json.dumps({"decision": decision, "quality": result[0], "latency": result[1]}) + "\n")
            f.flush()
            os.fsync(f.fileno())


def recording(log: TrialLog, executor: Callable, show: Callable[[], None]) -> Callable:
    """An executor that runs only the trials ``log`` lacks (each distinct decision once), records each as it
    comes back and answers every decision in order."""

    def run(fn: Callable, items: Iterable[dict]):
        items = list(items)
        pending = {}
        for d in items:
            if _key(d) not in log.done:
                pending.setdefault(_key(d), d)
        for (k, d), result in zip(pending.items(), executor(fn, list(pending.values()))):
            log.add(d, tuple(result))
            show()
        return [log.done[_key(d)] for d in items]
    return run


def multitrial_search(cfg: RunConfig, *, resume: bool = True, progress: bool = True) -> dict:
    """Run (or resume) the random or evolution search ``cfg.search`` describes into ``cfg.out``."""
    s = cfg.search
    if s is None:
        raise SpecError("search: the config has no search section")
    out = Path(cfg.out)
    open_folder(out)
    log = TrialLog(out / TRIALS, cfg, resume=resume)
    cfg.save(out / "config.yaml")
    space = get_space(s.space)
    task = task_space(cfg, space)
    latency = get_latency_model(s.target, cache_dir=s.cache_dir or DEFAULT_CACHE)
    evaluate = make_evaluator(cfg, space, latency, s.trial_steps, task=task)
    executor = ray_executor(s.ray_address) if s.executor == "ray" else map
    t0 = time.time()
    with Progress(s.trials, enabled=progress) as bar:
        def show() -> None:
            n = len(log.done)
            bar.update(f"{s.strategy} search: {n}/{s.trials} trials, {time.time() - t0:.0f} s", n)

        trials = run_baseline(s.strategy, space, evaluate, s.trials, s.latency_target, reward_kind=s.reward,
                              beta=s.beta, seed=cfg.train.seed, population=s.population, sample_size=s.sample_size,
                              executor=recording(log, executor, show))
    trace = []
    for i, t in enumerate(trials):
        top = best(trials[:i + 1])
        trace.append({"step": i, "trial": i, "decision": t.decision, "quality": round(t.quality, 4),
                      "latency": round(t.latency, 5), "reward": round(t.reward, 5),
                      "samples": [[round(t.latency, 5), round(t.quality, 4)]],
                      "likely_latency": round(top.latency, 5), "best_reward": round(top.reward, 5)})
    winner = best(trials)
    measure = "held-out top-1" if cfg.task == "classification" else \
        objective(cfg, task.sample_arch(np.random.default_rng(0))).label
    result = {**chosen_record(cfg, space, task, latency, winner.decision),  # zoo: latency only, untrained here
              "quality": winner.quality,
              "quality_label": f"{measure} after {s.trial_steps} steps of stand-alone training",
              "quality_measure": measure,
              "trials": len(trials)}
    write_atomic(out / "trace.jsonl", "".join(json.dumps(r) + "\n" for r in trace))
    write_atomic(out / "result.json", json.dumps(result, indent=1, default=str))
    space.fix(winner.decision).replace(name=f"{space.name}-searched").save(out / "arch.yaml")
    return result
