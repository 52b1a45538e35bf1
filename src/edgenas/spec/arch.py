"""The architecture spec: stem, stages of blocks, classifier head, deployment input, normalization.

An ``Arch`` is the single source of truth for a network's shape: the builder, the analytic counts and the
latency models all read it. It is frozen, validated on construction (errors name the path), and round-trips
through versioned JSON and YAML.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal, NamedTuple

import yaml
from pydantic import Field, ValidationError, model_validator

from ..io import write_atomic
from .blocks import Act, Block, Channels, KernelSize, Spec, Stride, at_most
from .datafile import read_data
from .errors import SpecError, format_loc, from_validation_error

SCHEMA_VERSION = 1
InputSize = Annotated[int, Field(ge=8, le=4096)]
NumClasses = Annotated[int, Field(gt=0), at_most(100_000, "wider than any on-device classifier; ImageNet-21k "
                                                 "has 21,841 classes")]


class Stem(Spec):
    out_channels: Channels
    kernel_size: KernelSize = 3
    stride: Stride = 2
    act: Act = Act.RELU


class Stage(Spec):
    """Blocks that share an output width; the first block maps the previous width to ``out_channels``."""

    out_channels: Channels
    blocks: Annotated[tuple[Block, ...], Field(min_length=1)]


class Head(Spec):
    """Classifier: [1x1 conv+BN+act] -> global average pool -> [linear+act] -> dropout -> linear."""

    conv_channels: Channels | None = 1280  # Google's "top" 1x1 conv before pooling
    hidden_channels: Channels | None = None  # MobileNetV3's linear layer after pooling
    num_classes: NumClasses = 1000
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0
    act: Act = Act.RELU


class Norm(Spec):
    """BatchNorm settings in PyTorch's momentum convention (momentum = 1 - TF's decay)."""

    eps: Annotated[float, Field(gt=0, lt=1)] = 1e-3  # Google: eps 1e-3
    momentum: Annotated[float, Field(gt=0, le=1)] = 0.01  # Google: decay 0.99


class Preprocess(Spec):
    """What the deployed model expects: x in [0, 1] -> (x - mean) / std, resize shorter side, center crop."""

    # one value per input channel (Arch checks the count); Google: RGB scaled to [-1, 1]
    mean: Annotated[tuple[float, ...], Field(min_length=1)] = (0.5, 0.5, 0.5)
    std: Annotated[tuple[Annotated[float, Field(gt=0)], ...], Field(min_length=1)] = (0.5, 0.5, 0.5)  # divides
    crop_pct: Annotated[float, Field(gt=0, le=1)] = 0.875
    interpolation: Literal["bilinear", "bicubic"] = "bilinear"


class BlockSite(NamedTuple):
    """One block in its place: stage, index within the stage, and the channels it maps."""

    stage: int
    index: int
    in_channels: int
    out_channels: int
    block: Block

    @property
    def loc(self) -> tuple:
        return ("stages", self.stage, "blocks", self.index)

    @property
    def path(self) -> str:
        return format_loc(self.loc)


class Arch(Spec):
    schema_version: int = SCHEMA_VERSION
    name: str = ""
    input_size: InputSize = 224  # deployment resolution; latency is predicted here
    in_channels: Annotated[int, Field(gt=0, le=16)] = 3
    stem: Stem
    stages: Annotated[tuple[Stage, ...], Field(min_length=1)]
    head: Head = Head()
    norm: Norm = Norm()
    drop_path_rate: Annotated[float, Field(ge=0, lt=1)] = 0.0  # stochastic depth, rising linearly per block
    preprocess: Preprocess = Preprocess()

    @model_validator(mode="before")
    @classmethod
    def _known_version(cls, data):
        if isinstance(data, dict) and data.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
            raise SpecError(f"schema_version: {data['schema_version']!r} is not supported "
                            f"(this edgenas reads {SCHEMA_VERSION})", loc=("schema_version",))
        return data

    @model_validator(mode="after")
    def _channels_fit(self):
        if len(self.preprocess.mean) != self.in_channels or len(self.preprocess.std) != self.in_channels:
            raise SpecError(f"preprocess: mean and std need {self.in_channels} values, one per input channel",
                            loc=("preprocess",))
        for site in self.blocks():
            problems = site.block.check(site.in_channels, site.out_channels)
            if problems:
                field, msg = problems[0]
                raise SpecError(f"{site.path}.{field}: {msg}", loc=(*site.loc, field))
        return self

    def blocks(self):
        """Yield a ``BlockSite`` for every block, in network order."""
        cin = self.stem.out_channels
        for i, stage in enumerate(self.stages):
            for j, block in enumerate(stage.blocks):
                yield BlockSite(i, j, cin, stage.out_channels, block)
                cin = stage.out_channels

    @property
    def num_blocks(self) -> int:
        return sum(len(s.blocks) for s in self.stages)

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    @property
    def out_channels(self) -> int:
        """Channels of the last backbone feature (before the head)."""
        return self.stages[-1].out_channels

    def replace(self, **changes) -> Arch:
        """A validated copy with top-level fields changed (nested specs are replaced whole)."""
        return parse_arch({**self.model_dump(mode="python"), **_dumped(changes)})

    def with_classes(self, num_classes: int) -> Arch:
        return self.replace(head=self.head.model_copy(update={"num_classes": num_classes}))

    # --- serialization -------------------------------------------------------------------------------
    def to_dict(self, compact: bool = False) -> dict:
        """Plain data, every block's ``type`` first. ``compact`` leaves out fields at their default value
        (the schema version, deployment input and block types always stay), which loads the same."""
        data = self.model_dump(mode="json", exclude_defaults=compact)
        data = {"schema_version": self.schema_version, "name": self.name, "input_size": self.input_size,
                "in_channels": self.in_channels, **data}
        for stage_data, stage in zip(data["stages"], self.stages):
            stage_data["blocks"] = [{"type": b.type, **d} for d, b in zip(stage_data["blocks"], stage.blocks)]
        return data

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(compact=True), sort_keys=False, default_flow_style=None, width=110)

    def save(self, path: str | Path) -> None:
        """Write JSON or YAML by suffix, atomically (temporary name, then rename)."""
        path = Path(path)
        write_atomic(path, self.to_json() if path.suffix == ".json" else self.to_yaml())


def _dumped(changes: dict) -> dict:
    return {k: v.model_dump(mode="python") if isinstance(v, Spec) else v for k, v in changes.items()}


def parse_arch(data) -> Arch:
    """Validate plain data (as from JSON/YAML) into an ``Arch``; raise a one-line ``SpecError``."""
    if isinstance(data, Arch):
        return data
    if not isinstance(data, dict):
        raise SpecError(f"an arch must be a mapping, got {type(data).__name__}")
    try:
        return Arch.model_validate(data)
    except ValidationError as err:
        raise from_validation_error(err) from None


def load_arch(path: str | Path) -> Arch:
    """Read an arch from a ``.json``, ``.yaml`` or ``.yml`` file."""
    data = read_data(path)
    try:
        return parse_arch(data)
    except SpecError as err:
        raise SpecError(f"{path}: {err}", loc=err.loc) from None
