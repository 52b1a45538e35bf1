"""The learning-rate schedule of every loop that trains weights (the fit loop, the supernet, brief trials)."""

from __future__ import annotations

import math


def lr_factor(step: float, total: float, warmup: float = 0.0, *, schedule: str = "cosine",
              decay_rate: float = 1.0, decay_every: float = 1.0, power: float = 0.9) -> float:
    """The base learning rate's multiplier at ``step`` (everything counted in steps): linear warm-up over the
    first ``warmup`` steps, then a cosine to zero at ``total``, a polynomial ``(1 - progress) ** power`` to zero
    at ``total`` (DeepLab's "poly", power 0.9, which Google's segmentation configs use), or Google's
    staircase, ``decay_rate`` every ``decay_every`` steps."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = min((step - warmup) / max(total - warmup, 1e-9), 1.0)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "poly":
        return (1 - progress) ** power
    return decay_rate ** math.floor((step - warmup) / decay_every)
