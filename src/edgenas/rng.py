"""The one scope in which library code may draw from torch's global generator.

Module initialisation (``nn.Conv2d``'s kaiming draws) has no generator argument, so repeatable weights need
the global generator seeded; ``seeded`` does that and puts the caller's stream back afterwards.
"""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def seeded(seed: int):
    """torch's global generator at ``seed`` inside, restored after (CPU; CUDA generators are left alone)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
