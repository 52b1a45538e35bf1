"""The latency protocol: ``LatencyModel.predict(arch) -> LatencyReport``, always at the arch's deployment size."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Protocol, runtime_checkable

from ..errors import EdgenasError
from ..spec import Arch


class LatencyError(EdgenasError):
    """A latency model cannot give an honest number; the message says why and for which layer."""


@dataclass(frozen=True)
class LayerTime:
    path: str
    op: str
    value: float  # in the report's unit
    source: str = ""  # where the number comes from: "scalesim", "lut", "measured", "fitted overhead", ...


@dataclass(frozen=True)
class LatencyReport:
    target: str
    arch: str
    input_size: int
    total: float
    unit: str  # "ms", or "MMACs" for the proxy
    precision: str  # "fp32" | "int8"
    layers: list[LayerTime] = field(default_factory=list)
    environment: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # every fallback or approximation, announced

    def to_dict(self) -> dict:
        return asdict(self)


@runtime_checkable
class LatencyModel(Protocol):
    name: str
    unit: str

    def predict(self, arch: Arch) -> LatencyReport: ...
