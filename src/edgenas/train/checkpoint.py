"""Atomic checkpoints that load with ``torch.load(weights_only=True)``: tensors, numbers and strings only."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from ..errors import EdgenasError
from ..io import load_torch, write_atomic

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
