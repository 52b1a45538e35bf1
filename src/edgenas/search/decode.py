"""The search's answer: the controller's most likely architecture, or, where that misses the latency target,
the most likely architecture the controller finds that meets it (a constrained decoding).

A short search can end before the controller settles: its most likely architecture then swings with every
step, and whether it lands near the target is luck (issue 26: the same quickstart config and seed ended at
+2.7% on one machine and +31% on another, where float rounding differs). TuNAS reads the answer off the
argmax; a user asked for a latency. So where the argmax misses ``target`` by more than ``tolerance``, the answer
is searched among the controller's likely architectures: greedy moves of one choice at a time, each the move
that brings the latency closest to the band per nat of log-probability it costs, until the latency is inside the
band; then every choice left off its most likely option goes back to it where the band still holds. The result
says which rule chose it, and by how much log-probability the answer trails the argmax.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch

from .controller import Controller

MOST_LIKELY = "most likely"
CONSTRAINED = "most likely within the target band"
CLOSEST = "closest to the target band"  # the moves ran out before the band: say so, never pretend


@dataclass(frozen=True)
class Decoded:
    decision: dict[str, Any]
    latency: float
    rule: str  # MOST_LIKELY, CONSTRAINED or CLOSEST
    most_likely_latency: float  # the controller's argmax, whichever rule chose
    log_prob_gap: float  # log p(argmax) - log p(answer), nats (0 when the argmax is the answer)
    moves: int  # single-choice changes from the argmax

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "decision"}


def band_distance(latency: float, target: float, tolerance: float) -> float:
    """How far (as a fraction of the target) ``latency`` lies outside target x (1 +- tolerance); 0 inside."""
    return max(0.0, abs(latency / target - 1.0) - tolerance)


def decode(controller: Controller, price: Callable[[dict], float], target: float, tolerance: float,
           max_moves: int = 64) -> Decoded:
    """The controller's answer for a latency ``target`` (``price``: a decision's predicted latency)."""
    space, paths = controller.space, controller.paths

    def log_prob(d: dict) -> float:
        with torch.no_grad():
            return float(controller.log_prob(d, controller.indices(d)))

    best = controller.most_likely()
    start_latency = price(best)
    start_logp = log_prob(best)
    if band_distance(start_latency, target, tolerance) == 0:
        return Decoded(best, start_latency, MOST_LIKELY, start_latency, 0.0, 0)
    decision, latency = best, start_latency
    moves = 0
    while band_distance(latency, target, tolerance) > 0 and moves < max_moves:
        here, lp = band_distance(latency, target, tolerance), log_prob(decision)
        pick = None
        for path in space.active_paths(decision, paths):
            choice = controller.choices[path]
            for i in range(len(choice.options)):
                value = choice.value(i)
                if value == decision[path]:
                    continue
                trial = {**decision, path: value}
                if not space.is_valid(trial):
                    continue
                lat = price(trial)
                gain = here - band_distance(lat, target, tolerance)
                if gain <= 0:
                    continue
                cost = max(lp - log_prob(trial), 1e-6)
                key = (gain / cost, gain)
                if pick is None or key > pick[0]:
                    pick = (key, trial, lat)
        if pick is None:
            break  # no single change comes closer
        _, decision, latency = pick
        moves += 1
    if band_distance(latency, target, tolerance) == 0:
        decision, latency = _restore_likely(controller, decision, latency, price, target, tolerance, log_prob)
    rule = CONSTRAINED if band_distance(latency, target, tolerance) == 0 else CLOSEST
    changed = sum(decision[p] != best[p] for p in paths)
    return Decoded(decision, latency, rule, start_latency, start_logp - log_prob(decision), changed)


def _restore_likely(controller: Controller, decision: dict, latency: float, price, target: float,
                    tolerance: float, log_prob) -> tuple[dict, float]:
    """Each active choice off its most likely option goes back to it (most probable gain first) where the
    architecture stays valid and inside the band; repeated until nothing changes (bounded by the choices)."""
    space = controller.space
    argmax = {p: controller.choices[p].value(int(lg.argmax())) for p, lg in zip(controller.paths, controller.logits)}
    for _ in range(len(controller.paths)):
        options = []
        for p in space.active_paths(decision, controller.paths):
            if decision[p] != argmax[p]:
                trial = {**decision, p: argmax[p]}
                if space.is_valid(trial):
                    options.append((log_prob(trial), p, trial))
        for _, _, trial in sorted(options, key=lambda o: (-o[0], o[1])):
            lat = price(trial)
            if band_distance(lat, target, tolerance) == 0:
                decision, latency = trial, lat
                break
        else:
            return decision, latency
    return decision, latency
