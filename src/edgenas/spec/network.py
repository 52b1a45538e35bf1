"""The network spec: a backbone ``Arch``, a graph of named feature nodes over its levels, a task head and an
optional serving tail. Segmentation (DeepLabv3+, Autoseg's BiFPN) and detection (SpaghettiNet, SSD) are
generator functions that write this data; nothing about a head is code.

A node combines its inputs at its ``level`` (nominal stride ``2**level``): each input is first brought to that
level's size (pooled down, or resized up), then summed, concatenated or weighted-summed, then passed through the
node's ops in order. Backbone features are inputs named ``C<level>`` (``C5`` = stride 32). Shapes, validation
and the layer list live in ``spec.graph``; this module holds the types and their serialization.
"""

from __future__ import annotations

import re
from typing import Annotated, ClassVar, Literal, Union

from pydantic import Field, field_validator, model_validator

from .arch import Arch, InputSize, Norm
from .blocks import Act, Spec, at_most_items
from .document import Document, Level, NodeName
from .graph import BACKBONE_LEVEL, plan_network
from .errors import SpecError, format_loc
from .ops import MAX_NODES, ConvOp, NetworkOp, OpsCap, SepConvOp



COMBINES = ("sum", "concat", "attn", "fastattn", "channel_attn", "channel_fastattn")


class Node(Spec):
    """A named feature: inputs brought to ``level``, combined, then ``ops`` in order."""

    name: NodeName
    inputs: Annotated[tuple[str, ...], Field(min_length=1, max_length=64)]
    level: Level
    combine: Literal["sum", "concat", "attn", "fastattn", "channel_attn", "channel_fastattn"] = "sum"
    act: Act = Act.NONE  # after combining (SpaghettiNet: ReLU6 after the sum)
    upsample: Literal["bilinear", "nearest"] = "bilinear"
    downsample: Literal["avg", "max"] = "avg"
    # pooling window when an input is coarsened by 2^d: EfficientDet's BiFPN pools with kernel 2^d + 1
    down_kernel: Literal["stride", "stride+1"] = "stride+1"
    ops: Annotated[tuple[NetworkOp, ...], OpsCap] = ()

    @field_validator("name")
    @classmethod
    def _not_a_level(cls, name: str) -> str:
        if BACKBONE_LEVEL.match(name):
            raise ValueError(f"{name!r} is reserved for the backbone's feature levels")
        return name

    @field_validator("ops")
    @classmethod
    def _settled(cls, ops):
        return tuple(_settled(op, (k,)) for k, op in enumerate(ops))


def _settled(op, loc: tuple):
    """``op`` with a network's defaults. A network's conv and sep_conv name their width and keep their input's
    size and level (no stride, no residual: a node's combine is where features are added)."""
    if isinstance(op, (ConvOp, SepConvOp)):
        bad = ("out_channels" if op.out_channels is None else "stride" if op.stride != 1
               else "residual" if op.residual else None)
        if bad:
            what = "needs out_channels" if bad == "out_channels" else f"has no {bad} (a detector's has)"
            raise SpecError(f"{format_loc((*loc, bad))}: a network's {op.type} {what}", loc=(*loc, bad))
    return op.settled("network")


class SegmentationHead(Spec):
    """Per-pixel class logits from one feature: a conv or separable conv to ``num_classes`` with bias."""

    type: Literal["segmentation"] = "segmentation"
    source: str
    classifier: Annotated[Union[ConvOp, SepConvOp], Field(discriminator="type")]
    bias_init: float = 0.0  # Autoseg's class head: -log(99), a 1% prior per class

    @field_validator("classifier")
    @classmethod
    def _settled(cls, classifier):
        return _settled(classifier, ())

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


class Network(Document):
    LEAD: ClassVar = ("schema_version", "kind", "name", "task", "input_size")
    NOUN: ClassVar = "a network"

    kind: Literal["network"] = "network"  # tells a network file from an arch file
    name: str = ""
    task: Literal["segmentation"] = "segmentation"
    input_size: InputSize = 512  # deployment resolution; latency is predicted here
    backbone: Arch  # its classifier head is not part of the network
    output_stride: Literal[8, 16, 32] | None = None  # caps the backbone's and every level's stride
    nodes: Annotated[tuple[Node, ...], at_most_items(MAX_NODES, "a network")] = ()
    head: Head
    tail: Tail | None = None  # serving only: training and evaluation read the head's logits
    norm: Norm = Norm()  # BatchNorm of the nodes (DeepLab's head: eps 2e-3)
    # how strided convs pad: PyTorch's symmetric k//2, or TF's 'same' (the odd pixel after), which weights
    # trained in TF (Google's TFLite files) expect
    padding: Literal["symmetric", "tf"] = "symmetric"

    @field_validator("tail", mode="before")
    @classmethod
    def _tail_text(cls, value):
        return {"steps": value} if isinstance(value, str) else value

    def check(self) -> None:
        plan_network(self)  # raises a SpecError naming the node, input or op

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    @property
    def in_channels(self) -> int:
        return self.backbone.in_channels

    @property
    def preprocess(self):
        return self.backbone.preprocess

    def with_classes(self, num_classes: int) -> Network:
        classifier = {**dict(self.head.classifier), "out_channels": num_classes}
        return self.replace(head={**dict(self.head), "classifier": classifier})

    def with_tail(self, tail: str | Tail | None) -> Network:
        return self.replace(tail=tail.text if isinstance(tail, Tail) else tail)  # text is validated with its path

    def to_dict(self, compact: bool = False) -> dict:
        data = super().to_dict(compact)
        if self.tail is not None:
            data["tail"] = self.tail.text
        return data


parse_network = Network.parse
