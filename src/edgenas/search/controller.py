"""TuNAS's controller: independent categorical logits per choice, REINFORCE with a moving-average baseline.

Rewards (TuNAS ``reward_for_single_cost_model``, ratio = latency / target):
``abs`` (the default) Q + beta * |ratio - 1| with beta = -0.10, a penalty symmetric around the target;
``mnas`` Q * ratio^beta; ``mnas-hard`` Q * min(ratio^beta, 1) (beta -0.07 is MnasNet's for these two).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Mapping

import torch

from ..space import SearchSpace
from ..spec import SpecError

REWARDS = ("abs", "mnas", "mnas-hard")


def reward(quality: float, latency: float, target: float, kind: str = "abs", beta: float = -0.10) -> float:
    if target <= 0 or latency <= 0:
        raise ValueError(f"latency and target must be positive, got {latency} and {target}")
    ratio = latency / target
    if kind == "abs":
        return quality + beta * abs(ratio - 1.0)
    if kind == "mnas":
        return quality * ratio ** beta
    if kind == "mnas-hard":
        return quality * min(ratio ** beta, 1.0)
    raise ValueError(f"unknown reward {kind!r}; known: {', '.join(REWARDS)}")


@dataclass(frozen=True)
class Trial:
    """One architecture and its score: quality, predicted latency and the reward of the two."""

    decision: dict[str, Any]
    quality: float
    latency: float
    reward: float
    indices: tuple[int, ...] = ()  # the controller's option per choice, when the controller drew it


class Controller(torch.nn.Module):
    """One logit vector per choice of ``space`` (all zeros: uniform at the start)."""

    def __init__(self, space: SearchSpace):
        super().__init__()
        self.space = space
        self.paths = [p for p, _ in space.choices()]
        self.labels = {p: c.labels for p, c in space.choices()}
        self.choices = dict(space.choices())
        self.logits = torch.nn.ParameterList(torch.nn.Parameter(torch.zeros(len(c.options)))
                                             for _, c in space.choices())

    def _value(self, path: str, i: int):
        return self.choices[path].value(i)

    def indices(self, decision: Mapping[str, Any]) -> list[int]:
        """The option index of every choice in ``decision``."""
        return [self.choices[p].index(decision[p], p) for p in self.paths]

    def sample(self, generator: torch.Generator, max_tries: int = 100) -> tuple[dict[str, Any], list[int]]:
        """A valid decision and its option indices. Where a block comes out invalid (e.g. a group size that
        does not divide its expanded channels) that block's own choices are redrawn (every choice, where the
        error names no block), at most ``max_tries`` times in all."""
        column = {p: i for i, p in enumerate(self.paths)}

        def draw(path: str):
            probs = torch.softmax(self.logits[column[path]].detach(), 0)
            return self._value(path, int(torch.multinomial(probs, 1, generator=generator)))

        def redraw(block: str | None, decision: dict) -> dict:
            return {**decision, **{p: draw(p) for p in (self.space.own_choices(block) if block else self.paths)}}

        try:
            _, decision = self.space.fix_repairing({p: draw(p) for p in self.paths}, redraw, max_tries)
        except SpecError:
            raise RuntimeError(f"controller: no valid architecture in {max_tries} draws") from None
        return decision, self.indices(decision)

    def log_prob(self, decision: Mapping[str, Any], idx: list[int]) -> torch.Tensor:
        active = set(self.space.active_paths(decision, self.paths))
        terms = [torch.log_softmax(lg, 0)[i] for p, lg, i in zip(self.paths, self.logits, idx) if p in active]
        return torch.stack(terms).sum()

    def entropy(self) -> torch.Tensor:
        """Sum over choices of each categorical's entropy (nats), differentiable."""
        return sum(-(torch.softmax(lg, 0) * torch.log_softmax(lg, 0)).sum() for lg in self.logits)

    def most_likely(self) -> dict[str, Any]:
        """The controller's most likely valid decision: the argmax of every choice; where that makes a block
        invalid (e.g. a group size that does not divide the expanded channels), that block's own choices
        take their most likely combination that is valid, block by block in network order."""
        decision = {p: self._value(p, int(lg.argmax())) for p, lg in zip(self.paths, self.logits)}
        try:
            return self.space.fix_repairing(decision, self._repair, len(self.paths) + 1)[1]
        except SpecError:
            raise RuntimeError("controller: no valid most likely architecture") from None

    def _repair(self, block: str | None, decision: dict) -> dict | None:
        """``decision`` with ``block``'s own choices at their most likely combination under which that block
        is valid (a later block may still be invalid: the next repair takes it)."""
        if block is None:
            return None
        own = [self.paths.index(p) for p in self.space.own_choices(block)]
        logp = {i: torch.log_softmax(self.logits[i].detach(), 0).tolist() for i in own}
        ranked = []
        for combo in itertools.product(*(range(len(logp[i])) for i in own)):
            trial = {**decision, **{self.paths[i]: self._value(self.paths[i], k) for i, k in zip(own, combo)}}
            active = set(self.space.active_paths(trial, [self.paths[i] for i in own]))
            ranked.append((-sum(logp[i][k] for i, k in zip(own, combo) if self.paths[i] in active), combo, trial))
        for _, _, trial in sorted(ranked, key=lambda r: (r[0], r[1])):
            try:
                self.space.fix(trial)
                return trial
            except SpecError as err:
                if self.space.failing_block(err) != block:
                    return trial  # this block is fine; a later one is not
        return None

    def probabilities(self) -> dict[str, dict[str, float]]:
        with torch.no_grad():
            return {p: dict(zip(self.labels[p], torch.softmax(lg, 0).tolist()))
                    for p, lg in zip(self.paths, self.logits)}


class Reinforce:
    """REINFORCE on a ``Controller``: advantage = reward - EMA baseline (momentum 0.95, TuNAS), Adam with
    beta1 = 0, beta2 = 0.999, eps 1e-8 (TuNAS)."""

    def __init__(self, controller: Controller, lr: float, momentum: float = 0.95, entropy_weight: float = 0.0):
        self.controller, self.momentum, self.entropy_weight = controller, momentum, entropy_weight
        self.optimizer = torch.optim.Adam(controller.parameters(), lr=lr, betas=(0.0, 0.999), eps=1e-8)
        self.baseline: float | None = None

    def step(self, samples: list[Trial], lr: float | None = None) -> float:
        """One update from the controller's scored samples; returns the advantage's mean. The baseline
        moves with the samples' mean reward (the cross-replica mean in TuNAS)."""
        mean = sum(t.reward for t in samples) / len(samples)
        self.baseline = mean if self.baseline is None else self.momentum * self.baseline + (1 - self.momentum) * mean
        if lr is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = lr
        loss = -sum((t.reward - self.baseline) * self.controller.log_prob(t.decision, list(t.indices))
                    for t in samples) / len(samples)
        if self.entropy_weight:
            loss = loss - self.entropy_weight * self.controller.entropy()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return mean - self.baseline

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "baseline": self.baseline}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.baseline = state["baseline"]
