"""Multi-trial baselines over the same space, reward and latency model as TuNAS: random search and regularized
(aging) evolution (Real et al. 2019). Each trial trains its architecture from scratch for ``trial_steps``
weight steps on the training split and scores the task's quality (top-1, mIoU, or the detection loss figure of
``search.objective``) on the held-out split; trials go through an executor
(``map``-like; local and sequential by default, or ``ray_executor`` for a Ray cluster).
"""

from __future__ import annotations

import collections
import time
from typing import Any, Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F

from ..eval.metrics import top1
from ..nn import build_model
from ..rng import seeded
from ..space import SearchSpace
from ..train.schedule import lr_factor
from .controller import Trial, reward
from .objective import objective
from .proxy import splits
from .supernet import recalibrate_bn


def train_briefly(arch, train_batches: Callable[[int], tuple], held: tuple, steps: int, lr: float, seed: int, *,
                  zero_head: bool = True, objective=None) -> float:
    """Top-1 on ``held`` of ``arch`` trained from scratch for ``steps`` SGD steps (cosine, no warm-up), its
    initialisation and dropout drawn from ``seed`` (the caller's random stream is left alone). ``objective``
    (``search.objective``): another task's loss and quality instead (a network or a detector for ``arch``).

    ``zero_head``: start the classifier at zero, as the supernet does. Google's dense initialisation gives
    initial logits whose scale grows with the head's width; over a few hundred steps that alone ranked
    architectures by head width (Kendall tau -0.57 between 300-step top-1 and head width on small-28, see
    docs/benchmarks.md), which full training does not."""
    with seeded(seed):
        return _train_briefly(arch, train_batches, held, steps, lr, zero_head, objective)


def _train_briefly(arch, train_batches, held, steps: int, lr: float, zero_head: bool = True, objective=None) -> float:
    model = build_model(arch).train()
    if zero_head and objective is None:
        torch.nn.init.zeros_(model.head.classifier.weight)
        torch.nn.init.zeros_(model.head.classifier.bias)
    loss_fn = objective.loss if objective else (lambda out, y: F.cross_entropy(out, y, label_smoothing=0.1))
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, steps))
    for step in range(steps):
        x, y = train_batches(step)
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    recalibrate_bn(model, [train_batches(s)[0] for s in range(min(steps, 4))])
    with torch.no_grad():
        return (objective.quality if objective else top1)(model(held[0]), held[1])


def mutate(space: SearchSpace, decision: dict, rng: np.random.Generator, max_tries: int = 100) -> dict:
    """Change one choice that shapes the architecture to another of its options (a valid point)."""
    choices = dict(space.choices())
    paths = [p for p in space.active_paths(decision) if len(choices[p].options) > 1]
    for _ in range(max_tries):
        path = paths[rng.integers(len(paths))]
        c = choices[path]
        others = [i for i, label in enumerate(c.labels) if label != str(decision[path])]
        child = {**decision, path: c.value(others[rng.integers(len(others))])}
        if space.is_valid(child):
            return child
    raise RuntimeError("mutate: no valid neighbour found")


def make_evaluator(cfg, space: SearchSpace, latency, steps: int,
                   task: SearchSpace | None = None) -> Callable[[dict], tuple[float, float]]:
    """``decision -> (held-out quality after training briefly, predicted latency)`` on ``cfg``'s data, with the
    training/held-out split of the TuNAS loop (``search.heldout``). ``task``: the proxy task's space, which
    is trained (default ``space``); latency is priced on ``space``, as TuNAS prices it. Classification keeps
    the cross-entropy with label smoothing 0.1 and top-1; other tasks train and score with their
    ``search.objective``."""
    task = task or space
    batches, held_batches = splits(cfg, task, cfg.search.heldout)
    held = held_batches(0)  # the whole held-out split
    aim = None if cfg.task == "classification" else objective(cfg, task.sample_arch(np.random.default_rng(0)))

    def evaluate(decision: dict) -> tuple[float, float]:
        return (train_briefly(task.fix(decision), batches, held, steps, cfg.train.lr, cfg.train.seed, objective=aim),
                latency.predict(space.fix(decision)).total)
    return evaluate


def run_baseline(kind: str, space: SearchSpace, evaluate: Callable[[dict], tuple[float, float]], trials: int,
                 target: float, *, reward_kind: str = "abs", beta: float = -0.10, seed: int = 0,
                 population: int = 8, sample_size: int = 3,
                 executor: Callable[[Callable, Iterable], Iterable] = map,
                 budget_seconds: float | None = None) -> list[Trial]:
    """``random`` or ``evolution``; ``evaluate(decision) -> (quality, latency)``. Evolution evaluates its
    first ``population`` trials as random and then one child per trial (a mutation of the best of
    ``sample_size`` random members), removing the oldest member each time.

    ``budget_seconds``: stop starting trials once this much wall time has passed (at most ``trials``; random
    search then evaluates one trial at a time): the same compute as a one-shot search took."""
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    spent = lambda: budget_seconds is not None and time.perf_counter() - start >= budget_seconds  # noqa: E731

    def score(decisions: list[dict]) -> list[Trial]:
        return [Trial(d, q, lat, reward(q, lat, target, reward_kind, beta))
                for d, (q, lat) in zip(decisions, executor(evaluate, decisions))]

    if kind == "random":
        if budget_seconds is None:
            return score([space.sample(rng) for _ in range(trials)])
        history = []
        while len(history) < trials and not spent():
            history += score([space.sample(rng)])
        return history
    if kind != "evolution":
        raise ValueError(f"unknown baseline {kind!r}; known: random, evolution")
    history = score([space.sample(rng) for _ in range(min(population, trials))])
    alive = collections.deque(history)
    while len(history) < trials and not spent():
        picks = [alive[i] for i in rng.choice(len(alive), size=min(sample_size, len(alive)), replace=False)]
        parent = max(picks, key=lambda t: t.reward)
        child = score([mutate(space, parent.decision, rng)])[0]
        history.append(child)
        alive.append(child)
        alive.popleft()
    return history


def ray_executor(address: str | None = None, num_cpus: int | None = None) -> Callable[[Callable, Iterable], list]:
    """A ``map``-like executor that runs each trial as a Ray task (one CPU each) on the cluster at ``address``
    (or a local one with ``num_cpus``); results come back in input order. Needs the ``ray`` extra."""
    try:
        import ray
    except ImportError:
        raise RuntimeError("the ray executor needs the ray extra: pip install 'edgenas[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=address, num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)

    def run(fn: Callable, items: Iterable) -> list:
        task = ray.remote(num_cpus=1)(fn)
        return ray.get([task.remote(item) for item in items])
    return run


def best(trials: list[Trial]) -> Trial:
    return max(trials, key=lambda t: t.reward)


def summary(trials: list[Trial]) -> dict[str, Any]:
    b = best(trials)
    return {"trials": len(trials), "best": {"decision": b.decision, "quality": b.quality, "latency": b.latency,
                                            "reward": b.reward}}
