"""Atomic checkpoints that load with ``torch.load(weights_only=True)``: tensors, numbers and strings only; and
``load_trained``, which reads a training checkpoint of any task back into (config, spec, model)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch
import yaml

from ..config import load_config
from ..errors import EdgenasError
from ..io import load_torch, write_atomic
from ..nn import build_model
from ..spec import parse_spec
from ..tasks.base import spec_task

TRAINED = ("arch", "config", "model", "ema")  # what eval and export read from a training checkpoint


class CheckpointError(EdgenasError):
    """A checkpoint is missing, unreadable, or not the kind asked for; the message names the file."""


def rng_state() -> dict:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(), "python": [list(x) if isinstance(x, tuple) else x
                                                       for x in random.getstate()],
            "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]]}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))


def save_checkpoint(state: dict, path: str | Path) -> None:
    """Write to a temporary name, then rename: a crash never leaves a half-written checkpoint."""
    write_atomic(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | Path, needs: tuple[str, ...] = TRAINED,
                    kind: str = "training checkpoint") -> dict:
    """The checkpoint at ``path``, checked to be a ``kind`` holding the keys ``needs`` before anything uses
    it, so that a wrong file is named with what is wrong rather than failing half-way through a load."""
    state = load_torch(path, CheckpointError, f"edgenas {kind}")
    if isinstance(state, dict) and state and all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: a bare state dict ({len(state)} tensor{'s' * (len(state) > 1)}), not an "
                              f"edgenas {kind}, which holds {', '.join(needs)}")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: holds a {type(state).__name__}, not an edgenas {kind}")
    missing = [k for k in needs if k not in state]
    if missing:
        raise CheckpointError(f"{path}: not an edgenas {kind} (missing keys: {', '.join(missing)})")
    return state


def load_trained(checkpoint, *, ema: bool = False, gc_mode: str = "native", overrides: list[str] = ()):
    """(config, spec, model) of a training checkpoint: its own resolved config (with ``overrides``), its spec
    (an ``Arch``, a ``Network`` or a ``Detector``), and the model with its weights (the EMA weights when asked;
    a run trained without EMA has none). The config's task must be the spec's."""
    state = load_checkpoint(checkpoint)
    if ema and not state["ema"]:
        raise CheckpointError(f"{checkpoint}: was trained without EMA (train.ema_decay 0), so it has no EMA "
                              "weights for --ema; drop --ema")
    try:
        base, spec = yaml.safe_load(state["config"]), parse_spec(json.loads(state["arch"]))
    except (TypeError, ValueError, yaml.YAMLError) as err:  # SpecError is a ValueError
        raise CheckpointError(f"{checkpoint}: its stored config or arch is unreadable ({err})") from None
    cfg = load_config(base=base, overrides=list(overrides))
    if cfg.task != spec_task(spec):  # the task would read fields this spec does not have
        raise CheckpointError(f"{checkpoint}: holds a {spec_task(spec)} model ({spec.name}), but task "
                              f"{cfg.task} was asked for; evaluate it with task {spec_task(spec)} "
                              f"(--set task={spec_task(spec)})")
    model = build_model(spec, gc_mode=gc_mode)
    try:
        model.load_state_dict(state["ema"] if ema else state["model"])
    except (RuntimeError, TypeError, AttributeError) as err:
        raise CheckpointError(f"{checkpoint}: its weights do not fit its arch "
                              f"({str(err).splitlines()[0]})") from None
    return cfg, spec, model
