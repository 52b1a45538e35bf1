"""The timed, resumable training run of the bench scripts that train (camvid_finetune.py, det_train.py)."""

from __future__ import annotations

import time
from pathlib import Path

from common import epochs  # bench/ is on the path when a bench script runs
from edgenas.config import RunConfig, load_config
from edgenas.tasks import get_task
from edgenas.train.loop import CHECKPOINT, fit


def timed_fit(config: str, out: Path, overrides: list[str], key: str) -> tuple[RunConfig, list[dict], dict]:
    """Train ``config`` with ``overrides`` into ``out`` through the fit loop, resuming what a killed benchmark
    left there. Returns the config, the epochs that scored ``key`` and the timing: this call's wall time, the
    epochs' train time and CPU-minutes (the process's CPU time, where the epochs recorded it; before that,
    train time x threads)."""
    cfg = load_config(config, overrides=[f"out={out}", *overrides])
    saved = out / "config.yaml"
    if saved.is_file() and load_config(saved, [f"out={out}"]) != cfg:
        raise SystemExit(f"{out}: holds a run of another config than this benchmark's; remove it or choose "
                         "another work folder")
    t0 = time.perf_counter()
    fit(cfg, get_task(cfg), resume=(out / CHECKPOINT).is_file())
    wall = time.perf_counter() - t0
    done = epochs(out / "metrics.jsonl", key)
    train = sum(r["epoch_seconds"] for r in done)
    cpu = sum(r.get("epoch_cpu_seconds", r["epoch_seconds"] * (cfg.train.threads or 1)) for r in done)
    return cfg, done, {"wall_seconds_this_call": wall, "train_seconds": train, "cpu_minutes": cpu / 60,
                       "threads": cfg.train.threads}
