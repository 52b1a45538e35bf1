"""What a resumed search must share with the one it resumes, for every strategy (TuNAS's checkpoint, a multi-trial
search's trial log): the resolved config, less the settings that change where output goes and how fast it runs."""

from __future__ import annotations

from pathlib import Path

from ..config import RunConfig
from ..spec import SpecError

# Settings a resumed search may change: where things go and how fast it runs, not what it computes.
RESUMABLE_CHANGES = {"out", "search.checkpoint_every", "search.target_tolerance", "search.retrain_epochs",
                     "search.cache_dir", "search.keep_supernet", "search.executor", "search.ray_address",
                     "train.threads", "train.epochs", "train.log_every", "data.data_dir", "data.workers"}


def resume_settings(cfg: RunConfig) -> dict:
    """What a resumed search must share with the one it resumes."""
    return {k: v for k, v in cfg.dotted().items() if k not in RESUMABLE_CHANGES}


def check_resumable(path: Path, state: dict, cfg: RunConfig, world: int) -> None:
    """Refuse ``state`` (a checkpoint or trial log at ``path``) written by another process count or config."""
    if state.get("world", 1) != world:
        raise SpecError(f"{path}: was written by {state.get('world', 1)} processes, not {world}; "
                        "resume with the same number")
    if "settings" not in state:
        raise SpecError(f"{path}: records no config (written by an older edgenas); choose another --out")
    now, then = resume_settings(cfg), state["settings"]
    changed = [f"{k} {then.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(now) | set(then))
               if now.get(k) != then.get(k)]
    if changed:
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        raise SpecError(f"{path}: was searched with another config ({', '.join(changed[:3])}{more}); "
                        "choose another --out or move it away")
