"""The MACs proxy: what most NAS code optimizes, kept for comparison with real latency targets."""

from __future__ import annotations

from ..spec import Arch, spec_layers
from .base import LatencyReport, LayerTime


class MacsModel:
    name = "macs"
    unit = "MMACs"

    def predict(self, arch: Arch) -> LatencyReport:
        layers = [LayerTime(x.path, x.op, x.macs / 1e6, "analytic") for x in spec_layers(arch) if x.macs]
        return LatencyReport(self.name, arch.name, arch.input_size, sum(x.value for x in layers), self.unit,
                             "any", layers)
