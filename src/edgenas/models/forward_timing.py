"""Eager forward timing of zoo models on real images: the set-up's smoke job, not a latency model.

Eager PyTorch is not how a phone runs these networks (its depthwise conv is far slower than XNNPACK's), so
the figures say "eager" wherever they appear; the latency targets live in ``edgenas.latency``.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from ..spec import count
from .create import create_model
from .registry import get_arch


def to_model_input(images: np.ndarray, arch) -> torch.Tensor:
    """uint8 (N, H, W) grayscale -> the arch's input: resized, channels repeated, normalized."""
    x = torch.from_numpy(np.array(images, dtype=np.float32)).div_(255).unsqueeze(1)
    x = F.interpolate(x, size=(arch.input_size,) * 2, mode="bilinear", align_corners=False)
    x = x.repeat(1, arch.in_channels, 1, 1)
    mean = torch.tensor(arch.preprocess.mean).view(1, -1, 1, 1)
    std = torch.tensor(arch.preprocess.std).view(1, -1, 1, 1)
    return (x - mean) / std


@torch.no_grad()
def time_forward(model: torch.nn.Module, x: torch.Tensor, runs: int = 5, warmup: int = 1) -> list[float]:
    model.eval()
    for _ in range(warmup):
        model(x)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        model(x)
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def zoo_forward_report(names: list[str], images: np.ndarray, runs: int = 5, seed: int = 0) -> list[dict]:
    """Per model: params and MACs (analytic), and the median eager forward time of the image batch."""
    torch.manual_seed(seed)
    rows = []
    for name in names:
        arch = get_arch(name)
        model = create_model(name)
        x = to_model_input(images, arch)
        times = time_forward(model, x, runs)
        counts = count(arch)
        median = statistics.median(times)
        rows.append({"model": name, "params": counts.params, "macs": counts.macs, "input": arch.input_size,
                     "batch": len(images), "eager_ms_median": round(median, 2),
                     "eager_ms_runs": [round(t, 2) for t in times],
                     "images_per_s": round(len(images) / median * 1e3, 1)})
    return rows
