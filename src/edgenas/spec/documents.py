"""What works on any spec document (an ``Arch``, a ``Network`` or a ``Detector``): telling them apart when
read, and their layers and counts. It sits above the three documents so that none of them imports another's
planner to dispatch (detectron2's ``meta_arch/build.py`` is the model).
"""

from __future__ import annotations

import reprlib
from dataclasses import dataclass
from pathlib import Path

from .arch import Arch
from .detector import Detector
from .detector_plan import detector_layers
from .document import at_path
from .errors import SpecError
from .graph import network_layers
from .layer import Layer
from .network import Network
from .shapes import arch_layers

# A file says which document it holds by ``kind``; an arch file has none (arch files came first).
KINDS: dict[str, type] = {"network": Network, "detector": Detector}


@dataclass(frozen=True)
class Counts:
    params: int
    macs: int


def parse_spec(data) -> Arch | Network | Detector:
    """An ``Arch``, a ``Network`` or a ``Detector``, told apart by ``kind`` (network, detector; none: an arch)."""
    if isinstance(data, (Arch, Network, Detector)):
        return data
    if isinstance(data, dict) and "kind" in data:
        kind = data["kind"]
        if not isinstance(kind, str) or kind not in KINDS:
            raise SpecError(f"kind: {reprlib.repr(kind)} is not a known kind (known, case-sensitive: "
                            f"{', '.join(KINDS)}; an arch has no kind)", loc=("kind",))
        return KINDS[kind].parse(data)
    return Arch.parse(data)


def load_spec(path: str | Path) -> Arch | Network | Detector:
    """Read an arch, a network or a detector from a ``.json``, ``.yaml`` or ``.yml`` file."""
    return at_path(path, parse_spec)


def spec_layers(spec, input_size: int | None = None) -> list[Layer]:
    """Every layer of an ``Arch`` (classifier), a ``Network`` (with its serving tail, where it has one) or a
    ``Detector``."""
    if isinstance(spec, Detector):
        return detector_layers(spec, input_size)
    if isinstance(spec, Network):
        return network_layers(spec, input_size)
    return arch_layers(spec, input_size)


def count(spec, input_size: int | None = None) -> Counts:
    """Analytic parameters (trainable: weights, biases, BN affine, fusion weights) and MACs of any spec."""
    layers = spec_layers(spec, input_size)
    return Counts(sum(layer.params for layer in layers), sum(layer.macs for layer in layers))
