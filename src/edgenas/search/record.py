"""What every search strategy's ``result.json`` holds, whatever chose the architecture (TuNAS's controller or
a multi-trial baseline)."""

from __future__ import annotations

from typing import Callable

from ..config import RunConfig
from ..env import environment
from ..models import get_arch, list_models
from ..space import SearchSpace
from .proxy import proxy_note


def chosen_record(cfg: RunConfig, space: SearchSpace, task: SearchSpace, latency, decision: dict,
                  scores: Callable[[dict], dict] | None = None) -> dict:
    """What every strategy's result.json holds: the chosen arch (and the task's), its predicted latency against
    the target, the zoo at the same deployment size (with ``scores(match)`` for the zoo models that are points
    of the space), the proxy note, the environment and the config."""
    s = cfg.search
    arch = space.fix(decision).replace(name=f"{space.name}-searched")
    report = latency.predict(arch)
    zoo = []
    for name in list_models(task=cfg.task):
        z = get_arch(name)
        if z.input_size != space.template.input_size:
            continue  # latency at another deployment size is not comparable
        entry = {"name": name, "latency": latency.predict(z).total}
        match = space.match(z) if scores is not None else None
        if match is not None:
            entry.update(scores(match))
        zoo.append(entry)
    task_arch = task.fix(decision).replace(name=f"{space.name}-searched@{cfg.data.dataset}")
    return {"strategy": s.strategy, "arch": arch.to_dict(), "task_arch": task_arch.to_dict(), "decision": decision,
            "predicted_latency": report.total, "unit": report.unit, "target": s.latency_target,
            "target_error": report.total / s.latency_target - 1, "latency_model": s.target,
            "latency_environment": report.environment, "latency_notes": report.notes,
            "proxy": proxy_note(space, task, cfg), "zoo": zoo, "environment": environment(cfg.train.threads),
            "config": cfg.model_dump(mode="json")}
