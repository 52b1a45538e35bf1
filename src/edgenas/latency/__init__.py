"""Latency models per target: one protocol, ``predict(arch) -> LatencyReport`` at the deployment size."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from .base import LatencyError, LatencyModel, LatencyReport, LayerTime
from .edgetpu import EdgeTPUModel
from .macs import MacsModel
from .scalesim_cycles import CycleCache

TARGETS = ("macs", "edgetpu", "cpu-ort", "cpu-ort-int8", "cpu-litert", "cpu-litert-int8")
# The measured targets need torch and a runtime, so they load by name when asked for: the analytic and
# simulated targets (and spec/, space/ that search with them) import without torch.
_MEASURED = {"cpu-ort": ("edgenas.latency.cpu_ort", "CpuOrtModel"),
             "cpu-litert": ("edgenas.latency.litert", "CpuLitertModel")}
# Simulated layers and measured lookup tables live here unless a command names another folder.
DEFAULT_CACHE = Path(os.environ.get("EDGENAS_CACHE", Path.home() / ".cache" / "edgenas"))


def get_latency_model(target: str, *, cache_dir: str | Path | None = None, lut_path: str | Path | None = None,
                      **options) -> LatencyModel:
    """A latency model by target name. ``cache_dir`` holds simulated layers and measured lookup tables;
    ``lut_path`` names a lookup table explicitly (e.g. one imported from a phone)."""
    cache_dir = Path(cache_dir) if cache_dir else None
    if target == "macs":
        return MacsModel()
    if target == "edgetpu":
        return EdgeTPUModel(cache=CycleCache(cache_dir / "scalesim-cycles.json" if cache_dir else None), **options)
    if target.removesuffix("-int8") in _MEASURED:
        module, name = _MEASURED[target.removesuffix("-int8")]
        if lut_path is None and cache_dir is not None:
            lut_path = cache_dir / f"lut-{target}.json"
        precision = "int8" if target.endswith("-int8") else "fp32"
        cls = getattr(importlib.import_module(module), name)
        return cls(precision=precision, lut_path=lut_path, **options)
    raise LatencyError(f"unknown latency target {target!r}; known: {', '.join(TARGETS)}")


__all__ = ["DEFAULT_CACHE", "TARGETS", "LatencyError", "LatencyModel", "LatencyReport", "LayerTime", "get_latency_model"]
