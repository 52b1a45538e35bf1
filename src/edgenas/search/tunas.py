"""The TuNAS search loop: shared-weight steps alternating with REINFORCE controller steps.

Each step trains the supernet on one training batch under an architecture the controller samples (one per
process under torchrun; gradients are averaged across processes). During the warm-up (the first
``warmup_fraction`` of steps) the controller is frozen, so sampling is uniform, and TuNAS's "increase ops" and
"increase filters" warm-up runs: at a position, all ops at once (their outputs summed) and, at a width choice,
the widest option, each with a probability that falls linearly from 1 to 0, so path and filter dropout rise
over the warm-up. After it, a controller step follows each weight step: ``rl_samples`` architectures per
process, each scored on a held-out batch (quality from the task, ``objective``: top-1 with batch statistics as
TuNAS, mIoU for segmentation, a loss-based figure for detection) and priced by the latency model at its
deployment input size; the rewards of every process feed one REINFORCE step, so the
controller stays identical everywhere. Its learning rate grows exponentially by ``rl_lr_growth`` over the
search (TuNAS). The answer is the controller's most likely architecture, or where that misses the target by more
than ``search.target_tolerance``, the most likely one that meets it (``decode``).

Quality can come from a proxy task (``proxy.task_space``), while latency is always priced on the space itself.
Classification spaces train the per-op ``Supernet``; segmentation and detection spaces the ``SlicedSupernet``,
whose warm-up widens filters only (it has no all-ops-at-once forward).

Everything a resumed run needs (supernet, controller, both optimizers, the baseline, the step and the trace
so far) is checkpointed atomically every ``checkpoint_every`` steps; batches and samples are pure functions
of (seed, step, process), so a resumed search replays exactly what an uninterrupted one does. A finished
search keeps only a small checkpoint (the controller and its record) unless ``search.keep_supernet``.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from ..config import RunConfig
from ..io import open_folder, write_atomic
from ..latency import DEFAULT_CACHE, get_latency_model
from ..progress import Progress, eta, note
from ..space import SearchSpace, get_space
from ..spec import Arch, SpecError, block_plan
from ..train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from ..train.loop import distributed, make_optimizer
from ..train.schedule import lr_factor
from .controller import Controller, Reinforce, Trial, reward
from .decode import decode
from .objective import objective
from .proxy import splits, task_space
from .record import chosen_record
from .resume import check_resumable, resume_settings
from .sliced import SlicedSupernet
from .supernet import Supernet, recalibrate_bn

CHECKPOINT = "search_checkpoint.pt"
RESTORED = ("controller", "rl_optimizer", "baseline", "step", "trace")  # what every search checkpoint holds
RECALIBRATION_BATCHES = 4  # training batches whose BatchNorm statistics a recalibrated estimate uses
WEIGHT_WARMUP = 0.025  # TuNAS: the shared weights' learning rate rises linearly over the first 2.5% of steps


def step_generator(seed: int, step: int, rank: int) -> torch.Generator:
    """The generator of one process's draws at one step: a pure function, so nothing to checkpoint."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 1009 + rank)


def rl_lr(step: int, warmup_steps: int, steps: int, lr: float, growth: float) -> float:
    """TuNAS's controller learning rate: 0 during the warm-up, then ``lr`` growing exponentially to
    ``lr * growth`` at the last step."""
    if step < warmup_steps:
        return 0.0
    return lr * growth ** ((step - warmup_steps) / max(steps - 1 - warmup_steps, 1))


def warmup_paths(space: SearchSpace, decision: dict, enable: float, gen: torch.Generator,
                 all_ops: bool = True) -> tuple[dict, dict]:
    """TuNAS's warm-up for one step: each width choice takes its widest option with probability ``enable``
    (increase filters), and (``all_ops``) each block position runs all its ops at once with probability
    ``enable`` (increase ops). Returns (the widened decision, {(stage, index): [block spec per op]}) for
    ``Supernet.forward``; an op that does not fit a position (e.g. a group size) is left out there."""
    if enable <= 0:
        return decision, {}
    widths = set(space.width_choices())
    widened = dict(decision)
    for path, choice in space.choices():
        if path not in widened:  # a choice under an op the decision did not pick: any option will do
            widened[path] = choice.value(int(torch.randint(len(choice.options), (), generator=gen)))
        if path in widths and float(torch.rand((), generator=gen)) < enable:
            widened[path] = max(choice.options)
    if not space.is_valid(widened):  # a widest width that breaks a group size: keep the sampled widths
        widened = {**widened, **{p: v for p, v in decision.items() if p in widths}}
    if not all_ops:
        return widened, {}
    choices = dict(space.choices())
    ops = {p: choices[p].labels for p in space.block_paths() if float(torch.rand((), generator=gen)) < enable}
    if not ops:
        return widened, {}

    def keep_widened(block: str | None, variant: dict) -> dict | None:  # this op does not fit here
        if block is None or variant.get(block) == widened.get(block):
            return None
        return {**variant, block: widened[block]}

    parallel: dict[tuple[int, int], list] = {}
    for label in sorted({lb for labels in ops.values() for lb in labels}):
        variant = {**widened, **{p: label for p, labels in ops.items() if label in labels}}
        arch, variant = space.fix_repairing(variant, keep_widened, len(ops) + 1)
        for pb in block_plan(arch):
            if pb.path in ops and variant[pb.path] == label:
                parallel.setdefault((pb.stage, pb.index), []).append(pb.block)
    return widened, parallel


def _all_reduce_grads(params: list[torch.nn.Parameter], world: int) -> None:
    """Average gradients over processes; a parameter this process's architecture did not use counts as 0."""
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad)
        p.grad /= world


class TunasSearch:
    """One search, in the parts a reader takes one at a time: ``__init__`` builds what the config names,
    ``restore`` resumes a checkpoint, each ``step`` is a ``weight_step`` then (after the warm-up) a
    ``controller_step``, ``checkpoint`` saves, and ``finish`` writes the result."""

    def __init__(self, cfg: RunConfig, *, progress: bool = True):
        if cfg.search is None:
            raise SpecError("search: the config has no search section")
        self.cfg, self.s, self.t, self.progress = cfg, cfg.search, cfg.train, progress
        self.rank, self.world = distributed()
        self.out = Path(cfg.out)
        self.warmup_steps = int(self.s.warmup_fraction * self.s.steps)
        if self.t.threads:
            torch.set_num_threads(self.t.threads)
        torch.manual_seed(self.t.seed)  # the process's stream, as the fit loop seeds it
        say = self.say
        self.space = get_space(self.s.space)
        self.task = task_space(cfg, self.space)
        say(f"search: {self.s.space} for {self.s.target} at {self.s.latency_target:g}, {self.s.steps} steps "
            f"({self.warmup_steps} of warm-up), into {self.out}")
        self.latency = get_latency_model(self.s.target, cache_dir=self.s.cache_dir or DEFAULT_CACHE)
        say(f"search: reading {cfg.data.dataset} ({self.s.heldout} training images held out for the controller)")
        self.weight_batches, self.held_batches = splits(cfg, self.task, self.s.rl_batch)
        self.objective = objective(cfg, self.task.sample_arch(np.random.default_rng(self.t.seed)))
        say(f"search: building the supernet of {self.task.name}")
        if isinstance(self.task.template, Arch):
            self.supernet = Supernet(self.task, self.s.separate)
        elif self.s.separate:
            raise SpecError(f"search.separate: the {self.s.space} supernet shares by slicing only; leave it empty")
        else:  # sized from the seed: every process builds the same shared tensors
            self.supernet = SlicedSupernet(self.task, seed=self.t.seed)
        self.controller = Controller(self.space)
        self.rl = Reinforce(self.controller, self.s.rl_lr)
        self.optimizer = make_optimizer(self.supernet, cfg)
        say(f"search: supernet of {sum(p.numel() for p in self.supernet.parameters()) / 1e6:.1f} M shared weights")
        self.step, self.trace, self.finished = 0, [], False
        self._prices: dict[str, float] = {}
        self.phase_seconds: dict[str, float] = {}  # wall time per part of a step, summed over the search

    def say(self, text: str) -> None:
        note(text, self.progress and self.rank == 0)

    # --- state -------------------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.out / CHECKPOINT

    def restore(self, resume: bool) -> None:
        """Continue the checkpoint in ``out`` when ``resume``; refuse to overwrite one otherwise."""
        path = self.checkpoint_path
        if not path.is_file():
            return
        if not resume:
            raise SpecError(f"{self.out}: already holds a search ({CHECKPOINT}); pass --resume to continue it or "
                            "choose another --out")
        state = load_checkpoint(path, RESTORED, "search checkpoint")
        check_resumable(path, state, self.cfg, self.world)
        self.controller.load_state_dict(state["controller"])
        self.rl.load_state_dict({"optimizer": state["rl_optimizer"], "baseline": state["baseline"]})
        self.step, self.trace = state["step"], json.loads(state["trace"])
        self.phase_seconds = json.loads(state.get("phase_seconds", "{}"))
        self.finished = "supernet" not in state  # a finished search that kept only its record
        if not self.finished:
            self.supernet.load_state_dict(state["supernet"])
            self.optimizer.load_state_dict(state["optimizer"])
            set_rng_state(state["rng"])

    def checkpoint(self, keep_supernet: bool = True) -> None:
        """Save everything a resumed search needs; ``keep_supernet=False`` (a finished search) keeps only
        the controller and the record, a small fraction of the size."""
        if self.rank == 0:
            state = {"controller": self.controller.state_dict(), "rl_optimizer": self.rl.optimizer.state_dict(),
                     "baseline": self.rl.baseline, "step": self.step, "world": self.world,
                     "settings": resume_settings(self.cfg), "trace": json.dumps(self.trace),
                     "phase_seconds": json.dumps(self.phase_seconds)}
            if keep_supernet:
                state.update(supernet=self.supernet.state_dict(), optimizer=self.optimizer.state_dict(),
                             rng=rng_state())
            save_checkpoint(state, self.checkpoint_path)
        if self.world > 1:
            dist.barrier()

    # --- one step ----------------------------------------------------------------------------------------
    def price(self, decision: dict) -> float:
        """Predicted latency of a decision's architecture on the space (deployment size), memoized."""
        key = json.dumps(decision, sort_keys=True, default=str)
        if key not in self._prices:
            self._prices[key] = self.latency.predict(self.space.fix(decision)).total
        return self._prices[key]

    def weight_step(self, gen: torch.Generator) -> float:
        """One SGD step of the shared weights under a sampled (and, in the warm-up, widened) architecture."""
        step, steps = self.step, self.s.steps
        self.supernet.train()
        decision, _ = self.controller.sample(gen)
        enable = 1.0 - step / self.warmup_steps if step < self.warmup_steps else 0.0
        sliced = isinstance(self.supernet, SlicedSupernet)
        decision, parallel = warmup_paths(self.task, decision, enable, gen, all_ops=not sliced)
        x, y = self.weight_batches(step * self.world + self.rank)
        for group in self.optimizer.param_groups:
            group["lr"] = self.t.lr * lr_factor(step, steps, max(1, int(WEIGHT_WARMUP * steps)))
        out = self.supernet(x, decision) if sliced else self.supernet(x, decision, parallel)
        loss = self.objective.loss(out, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.world > 1:
            _all_reduce_grads(list(self.supernet.parameters()), self.world)
        if self.t.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.supernet.parameters(), self.t.grad_clip)
        self.optimizer.step()
        return loss.item()

    @torch.no_grad()
    def score(self, decision: dict, x: torch.Tensor, y: torch.Tensor, indices=()) -> Trial:
        """Held-out quality (batch statistics, as TuNAS), predicted latency and reward of one decision."""
        self.supernet.train()
        quality, latency = self.objective.quality(self.supernet(x, decision), y), self.price(decision)
        return Trial(decision, quality, latency, reward(quality, latency, self.s.latency_target, self.s.reward,
                                                        self.s.beta), tuple(indices))

    def controller_step(self, gen: torch.Generator) -> tuple[list[Trial], list[Trial]]:
        """``rl_samples`` architectures scored on a held-out batch by every process, then one REINFORCE
        step on all of them; returns (this process's trials, everyone's)."""
        x, y = self.held_batches(self.step * self.world + self.rank)
        drawn = (self.controller.sample(gen) for _ in range(self.s.rl_samples))
        mine = [self.score(d, x, y, idx) for d, idx in drawn]
        everyone = [mine]
        if self.world > 1:
            everyone = [None] * self.world
            dist.all_gather_object(everyone, mine)
        trials = [t for ts in everyone for t in ts]
        s = self.s
        self.rl.step(trials, lr=rl_lr(self.step, self.warmup_steps, s.steps, s.rl_lr, s.rl_lr_growth))
        return mine, trials

    def record(self, loss: float, mine: list[Trial], trials: list[Trial]) -> dict:
        """The step's line of trace.jsonl."""
        out = {"step": self.step, "loss": round(loss, 5)}
        if trials:
            last = mine[-1]
            out.update(quality=round(last.quality, 4), latency=round(last.latency, 5),
                       reward=round(last.reward, 5), baseline=round(self.rl.baseline, 5),
                       samples=[[round(t.latency, 5), round(t.quality, 4)] for t in trials])
        out.update(entropy=round(self.controller.entropy().item(), 4),
                   likely_latency=round(self.price(self.controller.most_likely()), 5))
        if self.step % max(1, self.s.steps // 50) == 0 or self.step == self.s.steps - 1:
            out["probabilities"] = {p: [round(v, 4) for v in probs.values()]
                                    for p, probs in self.controller.probabilities().items()}
        return out

    @contextlib.contextmanager
    def timed(self, phase: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.phase_seconds[phase] = self.phase_seconds.get(phase, 0.0) + time.perf_counter() - t0

    def run_step(self) -> dict:
        gen = step_generator(self.t.seed, self.step, self.rank)
        warm = self.step < self.warmup_steps
        with self.timed("weight_step_warmup" if warm else "weight_step"):
            loss = self.weight_step(gen)
        mine, trials = [], []
        if not warm:
            with self.timed("controller_step"):
                mine, trials = self.controller_step(gen)
        with self.timed("record"):
            rec = self.record(loss, mine, trials)
        self.trace.append(rec)
        self.step += 1
        if self.step % self.s.checkpoint_every == 0 or self.step == self.s.steps:
            with self.timed("checkpoint"):
                self.checkpoint()
        return rec

    # --- the whole search ------------------------------------------------------------------------------
    def run(self, stop_after: int | None = None) -> dict:
        if self.finished:
            done = self.out / "result.json"
            if not done.is_file():
                raise SpecError(f"{self.checkpoint_path}: a finished search that kept no supernet "
                                "(search.keep_supernet false), and its result.json is gone; choose another --out")
            return json.loads(done.read_text())
        t0, first = time.time(), self.step
        if self.step:
            self.say(f"search: resuming at step {self.step} of {self.s.steps}")
        with Progress(self.s.steps, enabled=self.progress and self.rank == 0) as bar:
            while self.step < self.s.steps:
                if stop_after is not None and self.step >= stop_after:
                    return {"stopped_at": self.step}
                rec = self.run_step()
                done, seconds = int(30 * self.step / self.s.steps), time.time() - t0
                phase = "warm-up" if self.step <= self.warmup_steps else "search"
                bar.update(f"{phase} [{'#' * done}{'.' * (30 - done)}] {self.step}/{self.s.steps} loss "
                           f"{rec['loss']:.3f} entropy {rec['entropy']:.1f} likely {rec['likely_latency']:.4g} "
                           f"(target {self.s.latency_target:g}) {seconds:.0f} s"
                           f"{eta(self.step - first, self.s.steps - first, seconds)}", self.step)
        self.say("search: choosing the architecture and scoring it and the zoo on held-out images")
        return self.finish()

    def finish(self) -> dict:
        """Write trace.jsonl, result.json and arch.yaml; shrink the checkpoint unless asked to keep it."""
        result = _result(self)
        if self.rank == 0:
            write_atomic(self.out / "trace.jsonl", "".join(json.dumps(r) + "\n" for r in self.trace))
            result["checkpoint_bytes"] = {"during_search": self.checkpoint_path.stat().st_size}
            write_atomic(self.out / "result.json", json.dumps(result, indent=1, default=str))
            arch = self.space.fix(result["decision"]).replace(name=f"{self.space.name}-searched")
            arch.save(self.out / "arch.yaml")
        if not self.s.keep_supernet:
            self.checkpoint(keep_supernet=False)
        if self.rank == 0:
            result["checkpoint_bytes"]["kept"] = self.checkpoint_path.stat().st_size
            write_atomic(self.out / "result.json", json.dumps(result, indent=1, default=str))
        return result


def tunas_search(cfg: RunConfig, *, resume: bool = True, stop_after: int | None = None,
                 progress: bool = True) -> dict:
    """Run (or resume) the TuNAS search ``cfg.search`` describes into ``cfg.out``; returns the result record.
    ``stop_after``: return after that many steps, as an interruption would (tests)."""
    job = TunasSearch(cfg, progress=progress)
    if job.rank == 0:
        open_folder(job.out)
    job.restore(resume)
    if job.rank == 0:
        cfg.save(job.out / "config.yaml")
    return job.run(stop_after)


def _result(job: TunasSearch) -> dict:
    """The record result.json holds (``chosen_record``), with the supernet's held-out estimate for the chosen
    arch and for the zoo models that are points of the space, and the controller's last probabilities."""
    s = job.s
    decoded = decode(job.controller, job.price, s.latency_target, s.target_tolerance)
    decision = decoded.decision
    held = [job.held_batches(i) for i in range(max(1, min(4, s.heldout // s.rl_batch)))]
    calibration = [job.weight_batches(i)[0] for i in range(RECALIBRATION_BATCHES)]

    def estimate(d) -> float:
        return float(np.mean([job.score(d, x, y).quality for x, y in held]))

    @torch.no_grad()
    def recalibrated(d) -> float:
        """Its own BatchNorm statistics (from training batches), then eval mode: what a trained model of the
        decision would see, and fair between architectures that the controller sampled rarely or never."""
        model = recalibrate_bn(job.supernet.extract(d), calibration)
        return float(np.mean([job.objective.quality(model(x), y) for x, y in held]))

    def scores(d) -> dict:
        return {"supernet_quality": estimate(d), "supernet_quality_recalibrated": recalibrated(d)}

    t0 = time.perf_counter()
    out = {**chosen_record(job.cfg, job.space, job.task, job.latency, decision, scores), **scores(decision),
           "quality_label": f"{job.objective.label} (supernet, the batch's BatchNorm statistics)",
           "quality_measure": job.objective.label, "selection": decoded.to_dict(),
           "probabilities": job.controller.probabilities()}
    # seconds per phase of this search's steps (summed over resumes), and the closing estimates just made
    out["phase_seconds"] = {**job.phase_seconds, "result": time.perf_counter() - t0}
    return out
