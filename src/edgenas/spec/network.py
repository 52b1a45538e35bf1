"""The network spec: a backbone ``Arch``, a graph of named feature nodes over its levels, a task head and an
optional serving tail. Segmentation (DeepLabv3+, Autoseg's BiFPN) and detection (SpaghettiNet, SSD) are
generator functions that write this data; nothing about a head is code.

A node combines its inputs at its ``level`` (nominal stride ``2**level``): each input is first brought to that
level's size (pooled down, or resized up), then summed, concatenated or weighted-summed, then passed through the
node's ops in order. Backbone features are inputs named ``C<level>`` (``C5`` = stride 32). Shapes, validation
and the layer list live in ``spec.graph``; this module holds the types and their serialization.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Literal, Union

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from ..io import write_atomic
from .arch import SCHEMA_VERSION, Arch, InputSize, Norm, NumClasses, _dumped
from .blocks import Act, Channels, KernelSize, Spec
from .datafile import read_data
from .errors import SpecError, from_validation_error

Level = Annotated[int, Field(ge=0, le=10)]  # log2 of the nominal stride; 10 = 1024, past any input we allow
Dilation = Annotated[int, Field(ge=1, le=64)]
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
BACKBONE_LEVEL = re.compile(r"^C(\d+)$")


class ConvOp(Spec):
    """k x k conv [-> BN] [-> act]."""

    type: Literal["conv"] = "conv"
    out_channels: Channels
    kernel_size: KernelSize = 1
    dilation: Dilation = 1
    bias: bool = False
    norm: bool = True
    act: Act = Act.RELU


class SepConvOp(Spec):
    """Depthwise k x k [-> BN -> act] -> 1x1 [-> BN] [-> act]. DeepLab normalises both halves; Keras'
    ``SeparableConv2D`` (BiFPN) has neither BN nor act between them; SpaghettiNet biases the depthwise."""

    type: Literal["sep_conv"] = "sep_conv"
    out_channels: Channels
    kernel_size: KernelSize = 3
    dilation: Dilation = 1
    dw_bias: bool = False
    dw_norm: bool = False
    dw_act: Act = Act.NONE
    bias: bool = False
    norm: bool = True
    act: Act = Act.RELU


class PoolOp(Spec):
    """k x k average or max pooling with stride, 'same' padding; ``kernel_size`` None pools globally."""

    type: Literal["pool"] = "pool"
    kind: Literal["avg", "max"] = "avg"
    kernel_size: Annotated[int, Field(ge=1, le=64)] | None = None
    stride: Annotated[int, Field(ge=1, le=64)] = 1


class ResizeOp(Spec):
    """Resize by ``scale`` or to ``size`` (square), bilinear with half-pixel centres or nearest."""

    type: Literal["resize"] = "resize"
    scale: Annotated[float, Field(gt=0, le=64)] | None = None
    size: Annotated[int, Field(ge=1, le=4096)] | None = None
    mode: Literal["bilinear", "nearest"] = "bilinear"

    @model_validator(mode="after")
    def _one_target(self):
        if (self.scale is None) == (self.size is None):
            raise ValueError("give scale or size, exactly one")
        return self


class DropoutOp(Spec):
    type: Literal["dropout"] = "dropout"
    rate: Annotated[float, Field(ge=0, lt=1)]


NodeOp = Annotated[Union[ConvOp, SepConvOp, PoolOp, ResizeOp, DropoutOp], Field(discriminator="type")]
COMBINES = ("sum", "concat", "attn", "fastattn", "channel_attn", "channel_fastattn")


class Node(Spec):
    """A named feature: inputs brought to ``level``, combined, then ``ops`` in order."""

    name: str
    inputs: Annotated[tuple[str, ...], Field(min_length=1, max_length=64)]
    level: Level
    combine: Literal["sum", "concat", "attn", "fastattn", "channel_attn", "channel_fastattn"] = "sum"
    act: Act = Act.NONE  # after combining (SpaghettiNet: ReLU6 after the sum)
    upsample: Literal["bilinear", "nearest"] = "bilinear"
    downsample: Literal["avg", "max"] = "avg"
    # pooling window when an input is coarsened by 2^d: EfficientDet's BiFPN pools with kernel 2^d + 1
    down_kernel: Literal["stride", "stride+1"] = "stride+1"
    ops: tuple[NodeOp, ...] = ()

    @field_validator("name")
    @classmethod
    def _identifier(cls, name: str) -> str:
        if not NAME.match(name):
            raise ValueError(f"{name!r} is not a node name (letters, digits and _, not starting with a digit)")
        if BACKBONE_LEVEL.match(name):
            raise ValueError(f"{name!r} is reserved for the backbone's feature levels")
        return name


class SegmentationHead(Spec):
    """Per-pixel class logits from one feature: a conv or separable conv to ``num_classes`` with bias."""

    type: Literal["segmentation"] = "segmentation"
    source: str
    classifier: Annotated[Union[ConvOp, SepConvOp], Field(discriminator="type")]
    bias_init: float = 0.0  # Autoseg's class head: -log(99), a 1% prior per class

    @model_validator(mode="after")
    def _linear_classifier(self):
        c = self.classifier
        if c.norm or c.act != Act.NONE or not c.bias:
            raise ValueError("the classifier must be linear: bias true, norm false, act none")
        return self

    @property
    def num_classes(self) -> int:
        return self.classifier.out_channels


Head = Annotated[Union[SegmentationHead], Field(discriminator="type")]
TAIL_STEP = re.compile(r"^(resize(\d+)|argmax)$")


class Tail(Spec):
    """Google's serving ``finalize`` chain, e.g. ``resize512,argmax`` (exact) or ``resize256,argmax,resize512``
    (fused). A resize before the argmax is bilinear on the logits, one after it nearest on the class map; an
    argmax that is not last uses the Edge-TPU-friendly elementwise form (first maximum)."""

    steps: Annotated[tuple[str, ...], Field(min_length=1, max_length=8)]

    @field_validator("steps", mode="before")
    @classmethod
    def _split(cls, value):
        return tuple(s.strip() for s in value.split(",")) if isinstance(value, str) else value

    @field_validator("steps")
    @classmethod
    def _known(cls, steps):
        for i, step in enumerate(steps):
            m = TAIL_STEP.match(step)
            if not m:
                raise ValueError(f"step {i} {step!r} is not resize<N> or argmax")
            if m.group(2) and not 1 <= int(m.group(2)) <= 4096:
                raise ValueError(f"step {i} {step!r}: size must be 1..4096")
        if steps.count("argmax") > 1:
            raise ValueError("at most one argmax")
        return steps

    @property
    def text(self) -> str:
        return ",".join(self.steps)

    @property
    def argmax_at(self) -> int | None:
        return self.steps.index("argmax") if "argmax" in self.steps else None

    @property
    def fused(self) -> bool:
        """True where the argmax runs below the final resolution (Google's fused argmax)."""
        at = self.argmax_at
        return at is not None and at < len(self.steps) - 1

    def plan(self) -> list[tuple[str, int | None, str]]:
        """(kind, size, mode) per step: ("resize", N, "bilinear"|"nearest") or ("argmax", None, "plain"|"onehot")."""
        at, out = self.argmax_at, []
        for i, step in enumerate(self.steps):
            if step == "argmax":
                out.append(("argmax", None, "onehot" if self.fused else "plain"))
            else:
                out.append(("resize", int(step[6:]), "nearest" if at is not None and i > at else "bilinear"))
        return out


class Network(Spec):
    schema_version: int = SCHEMA_VERSION
    kind: Literal["network"] = "network"  # tells a network file from an arch file
    name: str = ""
    task: Literal["segmentation"] = "segmentation"
    input_size: InputSize = 512  # deployment resolution; latency is predicted here
    backbone: Arch  # its classifier head is not part of the network
    output_stride: Literal[8, 16, 32] | None = None  # caps the backbone's and every level's stride
    nodes: tuple[Node, ...] = ()
    head: Head
    tail: Tail | None = None  # serving only: training and evaluation read the head's logits
    norm: Norm = Norm()  # BatchNorm of the nodes (DeepLab's head: eps 2e-3)
    # how strided convs pad: PyTorch's symmetric k//2, or TF's 'same' (the odd pixel after), which weights
    # trained in TF (Google's TFLite files) expect
    padding: Literal["symmetric", "tf"] = "symmetric"

    @model_validator(mode="before")
    @classmethod
    def _known_version(cls, data):
        if isinstance(data, dict) and data.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
            raise SpecError(f"schema_version: {data['schema_version']!r} is not supported "
                            f"(this edgenas reads {SCHEMA_VERSION})", loc=("schema_version",))
        return data

    @field_validator("tail", mode="before")
    @classmethod
    def _tail_text(cls, value):
        return {"steps": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _graph_fits(self):
        from .graph import plan_network

        plan_network(self)  # raises a SpecError naming the node, input or op
        return self

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    @property
    def in_channels(self) -> int:
        return self.backbone.in_channels

    @property
    def preprocess(self):
        return self.backbone.preprocess

    def replace(self, **changes) -> Network:
        return parse_network({**self.model_dump(mode="python"), **_dumped(changes)})

    def with_classes(self, num_classes: int) -> Network:
        head = self.head.model_copy(update={"classifier": self.head.classifier.model_copy(
            update={"out_channels": num_classes})})
        return self.replace(head=head)

    def with_tail(self, tail: str | Tail | None) -> Network:
        return self.replace(tail=tail.text if isinstance(tail, Tail) else tail)  # text is validated with its path

    # --- serialization -------------------------------------------------------------------------------
    def to_dict(self, compact: bool = False) -> dict:
        data = self.model_dump(mode="json", exclude_defaults=compact)
        data = {"schema_version": self.schema_version, "kind": self.kind, "name": self.name, "task": self.task,
                "input_size": self.input_size, **data}
        data["backbone"] = self.backbone.to_dict(compact)
        # the discriminator of every op stays, even where it equals the default, so files read unambiguously
        for node_data, node in zip(data.get("nodes", []), self.nodes):
            if "ops" in node_data:
                node_data["ops"] = [{"type": o.type, **d} for d, o in zip(node_data["ops"], node.ops)]
        data["head"] = {"type": self.head.type, **data["head"]}
        data["head"]["classifier"] = {"type": self.head.classifier.type, **data["head"]["classifier"]}
        if self.tail is not None:
            data["tail"] = self.tail.text
        return data

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(compact=True), sort_keys=False, default_flow_style=None, width=110)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        write_atomic(path, self.to_json() if path.suffix == ".json" else self.to_yaml())


def parse_network(data) -> Network:
    """Validate plain data (as from JSON/YAML) into a ``Network``; raise a one-line ``SpecError``."""
    if isinstance(data, Network):
        return data
    if not isinstance(data, dict):
        raise SpecError(f"a network must be a mapping, got {type(data).__name__}")
    try:
        return Network.model_validate(data)
    except ValidationError as err:
        raise from_validation_error(err) from None


def parse_spec(data):
    """An ``Arch``, a ``Network`` or a ``Detector``, told apart by ``kind`` (network, detector; else an arch)."""
    from .arch import parse_arch
    from .detector import Detector, parse_detector

    if isinstance(data, (Arch, Network, Detector)):
        return data
    if isinstance(data, dict) and data.get("kind") == "network":
        return parse_network(data)
    if isinstance(data, dict) and data.get("kind") == "detector":
        return parse_detector(data)
    return parse_arch(data)


def load_spec(path: str | Path):
    """Read an arch, a network or a detector from a ``.json``, ``.yaml`` or ``.yml`` file."""
    data = read_data(path)
    try:
        return parse_spec(data)
    except SpecError as err:
        raise SpecError(f"{path}: {err}", loc=err.loc) from None


__all__ = ["ConvOp", "SepConvOp", "PoolOp", "ResizeOp", "DropoutOp", "NodeOp", "Node", "SegmentationHead",
           "Head", "Tail", "Network", "parse_network", "parse_spec", "load_spec", "COMBINES", "NumClasses"]
