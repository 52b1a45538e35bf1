"""The TuNAS search loop: shared-weight steps alternating with REINFORCE controller steps.

Each step trains the supernet on one training batch under an architecture the controller samples; after the
warm-up (the first ``warmup_fraction`` of steps, controller frozen so sampling is uniform) a controller step
follows: ``rl_samples`` architectures are sampled, each scored on a held-out batch (quality = top-1 accuracy
with batch statistics, as TuNAS) and priced by the latency model at its deployment input size, and the
controller takes one REINFORCE step on the rewards. The answer is the controller's most likely architecture.

Everything a resumed run needs (supernet, controller, both optimizers, the baseline, every RNG, the step and
the trace so far) is checkpointed atomically every ``checkpoint_every`` steps; batches are a pure function of
(seed, step), so a resumed search replays exactly what an uninterrupted one does.

Not yet built (see issue 5): TuNAS's op/filter path dropout during warm-up, one architecture per rank under
torchrun, and the RL learning-rate ramp.
"""

from __future__ import annotations

import copy
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..config import RunConfig
from ..env import environment
from ..io import write_atomic
from ..latency import get_latency_model
from ..space import get_space
from ..spec import SpecError
from ..train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from ..train.setup import dataset
from .controller import Controller, Reinforce, reward
from .supernet import Supernet


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


def splits(cfg: RunConfig, space, held_batch: int) -> tuple[Batches, Batches]:
    """Batches for weight steps (the training images but the last ``search.heldout``, augmented as
    configured) and for quality estimates (those last images, transformed as at evaluation)."""
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


def search(cfg: RunConfig, *, resume: bool = True, stop_after: int | None = None, progress: bool = True) -> dict:
    """Run (or resume) the search ``cfg.search`` describes into ``cfg.out``; returns the result record.
    ``stop_after``: return after that many steps, as an interruption would (tests)."""
    s, t = cfg.search, cfg.train
    if s is None:
        raise SpecError("search: the config has no search section")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if t.threads:
        torch.set_num_threads(t.threads)
    torch.manual_seed(t.seed)
    space = get_space(s.space)
    latency = get_latency_model(s.target)
    weights_batches, held_batches = splits(cfg, space, s.rl_batch)

    supernet = Supernet(space)
    controller = Controller(space)
    rl = Reinforce(controller, s.rl_lr)
    opt = torch.optim.SGD(supernet.parameters(), lr=t.lr, momentum=t.momentum, nesterov=t.nesterov,
                          weight_decay=t.weight_decay)
    sampler = torch.Generator().manual_seed(t.seed)
    step, trace = 0, []
    ckpt_path = out / "search_checkpoint.pt"
    if resume and ckpt_path.is_file():
        state = load_checkpoint(ckpt_path)
        supernet.load_state_dict(state["supernet"])
        controller.load_state_dict(state["controller"])
        opt.load_state_dict(state["optimizer"])
        rl.load_state_dict({"optimizer": state["rl_optimizer"], "baseline": state["baseline"]})
        sampler.set_state(state["sampler"])
        set_rng_state(state["rng"])
        step, trace = state["step"], json.loads(state["trace"])
    cfg.save(out / "config.yaml")
    prices: dict[str, float] = {}

    def price(decision: dict) -> float:
        key = _key(decision)
        if key not in prices:
            prices[key] = latency.predict(space.fix(decision)).total
        return prices[key]

    def checkpoint() -> None:
        save_checkpoint({"supernet": supernet.state_dict(), "controller": controller.state_dict(),
                         "optimizer": opt.state_dict(), "rl_optimizer": rl.optimizer.state_dict(),
                         "baseline": rl.baseline, "sampler": sampler.get_state(), "rng": rng_state(),
                         "step": step, "trace": json.dumps(trace)}, ckpt_path)

    warmup_steps = int(s.warmup_fraction * s.steps)
    t0 = time.time()
    while step < s.steps:
        if stop_after is not None and step >= stop_after:
            return {"stopped_at": step}
        supernet.train()
        decision, _ = controller.sample(sampler)
        x, y = weights_batches(step)
        for group in opt.param_groups:
            group["lr"] = t.lr * _lr_factor(step, s.steps)
        loss = F.cross_entropy(supernet(x, decision), y, label_smoothing=t.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if t.grad_clip:
            torch.nn.utils.clip_grad_norm_(supernet.parameters(), t.grad_clip)
        opt.step()
        record = {"step": step, "loss": round(loss.item(), 5)}
        if step >= warmup_steps:
            xh, yh = held_batches(step)
            samples = []
            with torch.no_grad():
                for _ in range(s.rl_samples):
                    d, idx = controller.sample(sampler)
                    quality = float((supernet(xh, d).argmax(1) == yh).float().mean())
                    lat = price(d)
                    samples.append((d, idx, reward(quality, lat, s.latency_target, s.reward, s.beta)))
            rl.step(samples)
            record.update(quality=round(quality, 4), latency=round(lat, 5),
                          reward=round(samples[-1][2], 5), baseline=round(rl.baseline, 5))
        record.update(entropy=round(controller.entropy().item(), 4), likely_latency=round(price(controller.most_likely()), 5))
        trace.append(record)
        step += 1
        if progress:
            print(f"\rsearch {step}/{s.steps} loss {record['loss']:.3f} entropy {record['entropy']:.2f} "
                  f"likely {record['likely_latency']:.4g} (target {s.latency_target:g}) "
                  f"{time.time() - t0:.0f} s", end="", file=sys.stderr, flush=True)
        if step % s.checkpoint_every == 0 or step == s.steps:
            checkpoint()
    if progress:
        print(file=sys.stderr)
    return _write_result(cfg, space, controller, latency, trace, price)


def _write_result(cfg, space, controller, latency, trace, price) -> dict:
    out, s = Path(cfg.out), cfg.search
    decision = controller.most_likely()
    arch = space.fix(decision).replace(name=f"{space.name}-searched")
    report = latency.predict(arch)
    result = {"arch": arch.to_dict(), "decision": decision,
              "predicted_latency": report.total, "unit": report.unit, "target": s.latency_target,
              "target_error": report.total / s.latency_target - 1, "latency_model": s.target,
              "latency_environment": report.environment, "environment": environment(cfg.train.threads),
              "probabilities": controller.probabilities(), "config": cfg.model_dump(mode="json")}
    write_atomic(out / "result.json", json.dumps(result, indent=1, default=str))
    arch.save(out / "arch.yaml")
    write_atomic(out / "trace.jsonl", "".join(json.dumps(r) + "\n" for r in trace))
    return result
