"""The TuNAS search loop: shared-weight steps alternating with REINFORCE controller steps.

Each step trains the supernet on one training batch under an architecture the controller samples (one per
process under torchrun; gradients are averaged across processes). During the warm-up (the first
``warmup_fraction`` of steps) the controller is frozen, so sampling is uniform, and TuNAS's "increase ops" and
"increase filters" warm-up runs: at a position, all ops at once (their outputs summed) and, at a width choice,
the widest option, each with a probability that falls linearly from 1 to 0, so path and filter dropout rise
over the warm-up. After it, a controller step follows each weight step: ``rl_samples`` architectures per
process, each scored on a held-out batch (quality = top-1 with batch statistics, as TuNAS) and priced by the
latency model at its deployment input size; the rewards of every process feed one REINFORCE step, so the
controller stays identical everywhere. Its learning rate grows exponentially by ``rl_lr_growth`` over the
search (TuNAS). The answer is the controller's most likely architecture.

Quality can come from a proxy task: ``task_space`` adapts the space to the data (input channels, classes,
normalization) at ``search.input_size``, while latency is always priced on the space itself.

Everything a resumed run needs (supernet, controller, both optimizers, the baseline, the step and the trace
so far) is checkpointed atomically every ``checkpoint_every`` steps; batches and samples are pure functions
of (seed, step, process), so a resumed search replays exactly what an uninterrupted one does.
"""

from __future__ import annotations

import copy
import json
import math
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from ..config import RunConfig
from ..env import environment
from ..io import write_atomic
from ..latency import DEFAULT_CACHE, get_latency_model
from ..space import SearchSpace, get_space
from ..space.space import failing_block
from ..spec import SpecError, block_plan
from ..train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from ..train.loop import distributed
from ..train.setup import FASHION_MNIST, dataset
from .controller import Controller, Reinforce, reward
from .supernet import Supernet

WIDTHS = re.compile(r"(out_channels|conv_channels|expand_ratio)$")


def _lr_factor(step: int, steps: int, warmup: float = 0.025) -> float:
    """TuNAS's shared-weight schedule: linear warm-up over 2.5% of the steps, then cosine to zero."""
    w = max(1, int(warmup * steps))
    if step < w:
        return (step + 1) / w
    return 0.5 * (1 + math.cos(math.pi * (step - w) / max(steps - w, 1)))


class Batches:
    """Batch ``step`` of a split: a slice of a permutation drawn from (seed, pass), as a pure function."""

    def __init__(self, data, indices: list[int], batch_size: int, seed: int):
        self.data, self.indices, self.batch_size, self.seed = data, indices, batch_size, seed
        self.per_pass = max(len(indices) // batch_size, 1)

    def __call__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, b = divmod(step, self.per_pass)
        order = torch.randperm(len(self.indices), generator=torch.Generator().manual_seed(self.seed * 7919 + epoch))
        self.data.set_epoch(epoch)
        items = [self.data[self.indices[i]] for i in order[b * self.batch_size:(b + 1) * self.batch_size].tolist()]
        return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])


def task_space(cfg: RunConfig, space: SearchSpace) -> SearchSpace:
    """The space the supernet trains on: ``space`` adapted to the data (its input channels, classes and
    normalization) at ``search.input_size``; ``space`` itself when nothing differs. Decisions are shared, so
    a decision's quality is measured on the task and its latency priced on ``space`` at deployment size."""
    t, d = space.template, cfg.data
    if d.dataset == "fashion-mnist":
        changes = dict(in_channels=1, preprocess=FASHION_MNIST, classes=10)
    else:
        from ..data.datasets import ImageFolder

        changes = dict(classes=len(ImageFolder(Path(d.data_dir) / "train", None).classes))
    changes["input_size"] = cfg.search.input_size or t.input_size
    classes = changes.pop("classes")
    if all(getattr(t, k) == v for k, v in changes.items()) and t.head.num_classes == classes:
        return space
    template = t.model_copy(update={**changes, "head": t.head.model_copy(update={"num_classes": classes})})
    return SearchSpace(f"{space.name}@{d.dataset}-{changes['input_size']}", template,
                       f"{space.name} adapted to {d.dataset} at {changes['input_size']} px (a proxy task)")


def proxy_note(space: SearchSpace, task: SearchSpace, cfg: RunConfig) -> str | None:
    """One sentence saying where quality and latency come from, when they come from different places."""
    if task is space:
        return None
    a, b = task.template, space.template
    return (f"Quality is estimated on {cfg.data.dataset} at {a.input_size}x{a.input_size}x{a.in_channels}, "
            f"{a.head.num_classes} classes (a proxy task); latency is predicted for the {space.name} "
            f"architecture at {b.input_size}x{b.input_size}x{b.in_channels}, {b.head.num_classes} classes.")


def splits(cfg: RunConfig, space: SearchSpace, held_batch: int) -> tuple[Batches, Batches]:
    """Batches for weight steps (the training images but the last ``search.heldout``, augmented as
    configured) and for quality estimates (those last images, transformed as at evaluation). ``space``:
    the task space (``task_space``)."""
    template = space.sample_arch(np.random.default_rng(cfg.train.seed))  # input size, channels, preprocessing
    train_data = dataset(cfg, template, "train")
    held_data = copy.copy(train_data)
    held_data.transform = dataset(cfg, template, "val").transform
    n, k = len(train_data), cfg.search.heldout
    if k >= n:
        raise SpecError(f"search.heldout: {k} leaves no training images of {n}")
    return (Batches(train_data, list(range(n - k)), cfg.train.batch_size, cfg.train.seed),
            Batches(held_data, list(range(n - k, n)), held_batch, cfg.train.seed + 1))


def _key(decision: dict) -> str:
    return json.dumps(decision, sort_keys=True, default=str)


def step_generator(seed: int, step: int, rank: int) -> torch.Generator:
    """The generator of one process's draws at one step: a pure function, so nothing to checkpoint."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 1009 + rank)


def rl_lr(step: int, warmup_steps: int, steps: int, lr: float, growth: float) -> float:
    """TuNAS's controller learning rate: 0 during the warm-up, then ``lr`` growing exponentially to
    ``lr * growth`` at the last step."""
    if step < warmup_steps:
        return 0.0
    return lr * growth ** ((step - warmup_steps) / max(steps - 1 - warmup_steps, 1))


def warmup_paths(space: SearchSpace, decision: dict, enable: float, gen: torch.Generator) -> tuple[dict, dict]:
    """TuNAS's warm-up for one step: each width choice takes its widest option with probability ``enable``
    (increase filters), and each block position runs all its ops at once with probability ``enable``
    (increase ops). Returns (the widened decision, {(stage, index): [block spec per op]}) for
    ``Supernet.forward``; an op that does not fit a position (e.g. a group size) is left out there."""
    if enable <= 0:
        return decision, {}
    widened = dict(decision)
    for path, choice in space.choices():
        if path not in widened:  # a choice under an op the decision did not pick: any option will do
            widened[path] = choice.value(int(torch.randint(len(choice.options), (), generator=gen)))
        if WIDTHS.search(path) and float(torch.rand((), generator=gen)) < enable:
            widened[path] = max(choice.options)
    try:
        space.fix(widened)
    except SpecError:  # a widest width that breaks a group size: keep the sampled widths
        widened = {**widened, **{p: v for p, v in decision.items() if WIDTHS.search(p)}}
    choices = dict(space.choices())
    ops = {p: choices[p].labels for p in space.block_paths() if float(torch.rand((), generator=gen)) < enable}
    if not ops:
        return widened, {}
    parallel: dict[tuple[int, int], list] = {}
    for label in sorted({lb for labels in ops.values() for lb in labels}):
        variant = {**widened, **{p: label for p, labels in ops.items() if label in labels}}
        for _ in range(len(ops) + 1):
            try:
                arch = space.fix(variant)
                break
            except SpecError as err:
                bad = failing_block(err)
                if not bad or variant.get(bad) == widened.get(bad):
                    raise
                variant[bad] = widened[bad]  # this op does not fit here
        for pb in block_plan(arch):
            path = f"stages[{pb.stage}].blocks[{pb.index}]"
            if path in ops and variant[path] == label:
                parallel.setdefault((pb.stage, pb.index), []).append(pb.block)
    return widened, parallel


def _all_reduce_grads(params: list[torch.nn.Parameter], world: int) -> None:
    """Average gradients over processes; a parameter this process's architecture did not use counts as 0."""
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad)
        p.grad /= world


# Settings a resumed search may change: where things go and how fast it runs, not what it computes.
RESUMABLE_CHANGES = {"out", "search.checkpoint_every", "search.retrain_epochs", "search.cache_dir", "train.threads",
                     "train.epochs", "train.log_every", "data.data_dir", "data.workers"}


def _settings(cfg: RunConfig) -> dict:
    """What a resumed search must share with the one it resumes."""
    return {k: v for k, v in cfg.dotted().items() if k not in RESUMABLE_CHANGES}


def _check_resumable(path: Path, state: dict, cfg: RunConfig, world: int) -> None:
    if state.get("world", 1) != world:
        raise SpecError(f"{path}: was written by {state.get('world', 1)} processes, not {world}; "
                        "resume with the same number")
    if "settings" not in state:
        raise SpecError(f"{path}: records no config (written by an older edgenas); choose another --out")
    now, then = _settings(cfg), state["settings"]
    changed = [f"{k} {then.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(now) | set(then))
               if now.get(k) != then.get(k)]
    if changed:
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        raise SpecError(f"{path}: was searched with another config ({', '.join(changed[:3])}{more}); "
                        "choose another --out or move it away")


def search(cfg: RunConfig, *, resume: bool = True, stop_after: int | None = None, progress: bool = True) -> dict:
    """Run (or resume) the search ``cfg.search`` describes into ``cfg.out``; returns the result record.
    ``stop_after``: return after that many steps, as an interruption would (tests)."""
    s, t = cfg.search, cfg.train
    if s is None:
        raise SpecError("search: the config has no search section")
    rank, world = distributed()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if t.threads:
        torch.set_num_threads(t.threads)
    torch.manual_seed(t.seed)
    space = get_space(s.space)
    task = task_space(cfg, space)
    latency = get_latency_model(s.target, cache_dir=s.cache_dir or DEFAULT_CACHE)
    weights_batches, held_batches = splits(cfg, task, s.rl_batch)

    supernet = Supernet(task)
    controller = Controller(space)
    rl = Reinforce(controller, s.rl_lr)
    opt = torch.optim.SGD(supernet.parameters(), lr=t.lr, momentum=t.momentum, nesterov=t.nesterov,
                          weight_decay=t.weight_decay)
    step, trace = 0, []
    ckpt_path = out / "search_checkpoint.pt"
    if not resume and ckpt_path.is_file():
        raise SpecError(f"{out}: already holds a search (search_checkpoint.pt); pass --resume to continue it or "
                        "choose another --out")
    if resume and ckpt_path.is_file():
        state = load_checkpoint(ckpt_path)
        _check_resumable(ckpt_path, state, cfg, world)
        supernet.load_state_dict(state["supernet"])
        controller.load_state_dict(state["controller"])
        opt.load_state_dict(state["optimizer"])
        rl.load_state_dict({"optimizer": state["rl_optimizer"], "baseline": state["baseline"]})
        set_rng_state(state["rng"])
        step, trace = state["step"], json.loads(state["trace"])
    if rank == 0:
        cfg.save(out / "config.yaml")
    prices: dict[str, float] = {}

    def price(decision: dict) -> float:
        key = _key(decision)
        if key not in prices:
            prices[key] = latency.predict(space.fix(decision)).total
        return prices[key]

    def checkpoint() -> None:
        if rank == 0:
            save_checkpoint({"supernet": supernet.state_dict(), "controller": controller.state_dict(),
                             "optimizer": opt.state_dict(), "rl_optimizer": rl.optimizer.state_dict(),
                             "baseline": rl.baseline, "rng": rng_state(), "step": step, "world": world,
                             "settings": _settings(cfg),
                             "trace": json.dumps(trace)}, ckpt_path)
        if world > 1:
            dist.barrier()

    warmup_steps = int(s.warmup_fraction * s.steps)
    snapshot_every = max(1, s.steps // 50)
    t0 = time.time()
    while step < s.steps:
        if stop_after is not None and step >= stop_after:
            return {"stopped_at": step}
        gen = step_generator(t.seed, step, rank)
        supernet.train()
        decision, _ = controller.sample(gen)
        enable = 1.0 - step / warmup_steps if step < warmup_steps else 0.0
        decision, parallel = warmup_paths(task, decision, enable, gen)
        x, y = weights_batches(step * world + rank)
        for group in opt.param_groups:
            group["lr"] = t.lr * _lr_factor(step, s.steps)
        loss = F.cross_entropy(supernet(x, decision, parallel), y, label_smoothing=t.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if world > 1:
            _all_reduce_grads(list(supernet.parameters()), world)
        if t.grad_clip:
            torch.nn.utils.clip_grad_norm_(supernet.parameters(), t.grad_clip)
        opt.step()
        record = {"step": step, "loss": round(loss.item(), 5)}
        if step >= warmup_steps:
            xh, yh = held_batches(step * world + rank)
            mine = []
            with torch.no_grad():
                for _ in range(s.rl_samples):
                    d, idx = controller.sample(gen)
                    quality = float((supernet(xh, d).argmax(1) == yh).float().mean())
                    lat = price(d)
                    mine.append((d, idx, reward(quality, lat, s.latency_target, s.reward, s.beta), quality, lat))
            everyone = [mine]
            if world > 1:
                everyone = [None] * world
                dist.all_gather_object(everyone, mine)
            samples = [m for ms in everyone for m in ms]
            rl.step([m[:3] for m in samples], lr=rl_lr(step, warmup_steps, s.steps, s.rl_lr, s.rl_lr_growth))
            record.update(quality=round(quality, 4), latency=round(lat, 5), reward=round(mine[-1][2], 5),
                          baseline=round(rl.baseline, 5),
                          samples=[[round(m[4], 5), round(m[3], 4)] for m in samples])
        likely = controller.most_likely()
        record.update(entropy=round(controller.entropy().item(), 4), likely_latency=round(price(likely), 5))
        if step % snapshot_every == 0 or step == s.steps - 1:
            record["probabilities"] = {p: [round(v, 4) for v in probs.values()]
                                       for p, probs in controller.probabilities().items()}
        trace.append(record)
        step += 1
        if progress and rank == 0:
            done = int(30 * step / s.steps)
            print(f"\rsearch [{'#' * done}{'.' * (30 - done)}] {step}/{s.steps} loss {record['loss']:.3f} "
                  f"entropy {record['entropy']:.1f} likely {record['likely_latency']:.4g} (target "
                  f"{s.latency_target:g}) {time.time() - t0:.0f} s", end="", file=sys.stderr, flush=True)
        if step % s.checkpoint_every == 0 or step == s.steps:
            checkpoint()
    if progress and rank == 0:
        print(file=sys.stderr)
    result = _result(cfg, space, task, supernet, controller, latency, held_batches, price)
    if rank == 0:
        write_atomic(out / "trace.jsonl", "".join(json.dumps(r) + "\n" for r in trace))
        write_atomic(out / "result.json", json.dumps(result, indent=1, default=str))
        space.fix(result["decision"]).replace(name=f"{space.name}-searched").save(out / "arch.yaml")
    return result


def _result(cfg, space, task, supernet, controller, latency, held_batches, price) -> dict:
    """The record result.json holds: the chosen arch and its predicted latency, where quality came from, the
    supernet's held-out estimate for it and for the zoo models that are points of the space, the zoo's
    predicted latencies (at the same deployment size), the controller's last probabilities, the config."""
    from ..models import get_arch, list_models

    s = cfg.search
    decision = controller.most_likely()
    arch = space.fix(decision).replace(name=f"{space.name}-searched")
    report = latency.predict(arch)
    held = [held_batches(i) for i in range(max(1, min(4, s.heldout // s.rl_batch)))]

    @torch.no_grad()
    def estimate(d) -> float:
        supernet.train()  # batch statistics, as in the search
        return float(np.mean([(supernet(x, d).argmax(1) == y).float().mean() for x, y in held]))

    zoo = []
    for name in list_models():
        z = get_arch(name)
        if z.input_size != space.template.input_size:
            continue  # latency at another deployment size is not comparable
        entry = {"name": name, "latency": latency.predict(z).total}
        match = space.match(z)
        if match is not None:
            entry["supernet_quality"] = estimate(match)
        zoo.append(entry)
    task_arch = task.fix(decision).replace(name=f"{space.name}-searched@{cfg.data.dataset}")
    return {"arch": arch.to_dict(), "task_arch": task_arch.to_dict(), "decision": decision,
            "predicted_latency": report.total, "unit": report.unit, "target": s.latency_target,
            "target_error": report.total / s.latency_target - 1, "latency_model": s.target,
            "latency_environment": report.environment, "latency_notes": report.notes,
            "supernet_quality": estimate(decision), "proxy": proxy_note(space, task, cfg), "zoo": zoo,
            "environment": environment(cfg.train.threads), "probabilities": controller.probabilities(),
            "config": cfg.model_dump(mode="json")}
