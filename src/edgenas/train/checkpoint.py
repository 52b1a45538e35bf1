"""Atomic checkpoints that load with ``torch.load(weights_only=True)``: tensors, numbers and strings only."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from ..io import write_atomic


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


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    return torch.load(path, map_location="cpu", weights_only=True)
