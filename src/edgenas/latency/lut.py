"""Latency lookup tables: one entry per distinct layer, measured on one device, with its fingerprint.

Schema (JSON, ``schema_version`` 1): ``target`` (e.g. "cpu-ort"), ``device`` (a name), ``fingerprint`` (CPU
model, cores, runtime and version, threads, precision), ``date``, ``entries`` keyed by ``layer_key`` (op,
input and output shapes, kernel, stride, dilation, groups, activation, bias, precision) with the median and
spread of the measured runs, and ``overhead``: end-to-end ms = scale x (sum of entries) + a + b x number of
layers, fitted on whole-model measurements (absent until fitted). The scale absorbs what timing a layer alone
gets systematically wrong (warm caches, no neighbours competing for them). With ``class_scales`` (fitted when
enough models were measured) each kind of layer (1x1, full k x k, depthwise, grouped conv, elementwise, other)
gets its own scale instead: a runtime that fuses or overlaps some kinds inside a graph (XNNPACK) gets them
wrong by different amounts.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from ..io import write_atomic
from ..spec import Layer
from .base import LatencyError

SCHEMA_VERSION = 1


def layer_key(layer: Layer, precision: str) -> str:
    # A mode (resize kind, weighted fusion, argmax form) or a sum of more than two inputs gets its own part;
    # the layers the classification tables hold keep the keys they were measured under.
    extra = f"|{layer.mode or '-'}:{layer.num_inputs}" if layer.mode or layer.num_inputs > 2 else ""
    return (f"{layer.op}{extra}|{layer.in_channels}x{layer.in_size[0]}x{layer.in_size[1]}"
            f"|{layer.out_channels}x{layer.out_size[0]}x{layer.out_size[1]}|k{layer.kernel_size}s{layer.stride}"
            f"d{layer.dilation}g{layer.groups}|{layer.act}|{'bias' if layer.bias or layer.norm else 'nobias'}"
            f"|{precision}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LutEntry(_Model):
    median_ms: float
    p10_ms: float
    p90_ms: float
    runs: int


class Fingerprint(_Model):
    cpu: str
    cores: int
    runtime: str
    runtime_version: str
    threads: int
    precision: str

    def differences(self, other: Fingerprint) -> list[str]:
        return [f"{k} {getattr(self, k)!r} vs {getattr(other, k)!r}" for k in type(self).model_fields
                if getattr(self, k) != getattr(other, k)]


class Overhead(_Model):
    scale: float = 1.0
    a_ms: float
    b_ms_per_layer: float
    fitted_on: int  # number of whole-model measurements
    class_scales: dict[str, float] = {}  # per layer kind (measured.layer_class); replaces ``scale`` when given

    def total(self, by_class: dict[str, float], layers: int) -> float:
        """End-to-end ms from the entries' sums per layer kind and the number of layers."""
        scaled = sum(self.class_scales.get(k, self.scale) * ms for k, ms in by_class.items()) \
            if self.class_scales else self.scale * sum(by_class.values())
        return scaled + self.a_ms + self.b_ms_per_layer * layers


class Lut(_Model):
    schema_version: int = SCHEMA_VERSION
    target: str
    device: str
    fingerprint: Fingerprint
    date: str
    entries: dict[str, LutEntry] = {}
    overhead: Overhead | None = None

    def save(self, path: str | Path) -> None:
        write_atomic(path, self.model_dump_json(indent=1))

    @classmethod
    def load(cls, path: str | Path) -> Lut:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise LatencyError(f"{path}: cannot read a lookup table ({err})") from None
        if data.get("schema_version") != SCHEMA_VERSION:
            raise LatencyError(f"{path}: LUT schema_version {data.get('schema_version')!r} is not supported "
                               f"(this edgenas reads {SCHEMA_VERSION})")
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            first = err.errors()[0]
            loc = ".".join(str(x) for x in first["loc"])
            raise LatencyError(f"{path}: {loc}: {first['msg']}") from None
