"""The detector spec: SpaghettiNet's graph of named nodes (reference 5.1) feeding an SSD head (5.3), as data.

A stem (k x k, stride 2, BN, ReLU6, level 1) starts the graph. Each node has a nominal ``level`` (log2 of its
stride), a ``width`` and ``inputs`` earlier in the list (the list is the topological order):

* one input is a *passthrough* edge: the tensor as it is;
* several inputs are *resample* edges, each brought to the node's level and width: a finer node's level by
  1x1 conv + BN at the source, then nearest-neighbour upsampling by 2^d; a coarser level by max-pooling
  (kernel 2^d + 1, stride 2^d, TF 'same') then 1x1 conv + BN; the same level by 1x1 conv + BN. The edge
  outputs are cropped to the size of the edge whose source has the lowest level, summed, then ReLU6.

Then the node's ops run in order, each with SpaghettiNet's own conventions (they differ from the
classification blocks): ``ibn`` expands relative to the node's *output* width; ``fused_grouped`` splits its
input into ``groups`` slices and expands each relative to the *input*; ``sep`` is a biased depthwise conv
with no BN or activation before its 1x1 + BN + ReLU6. Residuals are explicit flags.

A detector may instead start from a classification ``backbone`` (an ``Arch``; then there is no stem), as the
SSDLite baselines do. Its features are inputs by name: ``C<level>`` the backbone's feature level (its last
output at stride 2^level), ``E<level>`` the expansion output of the inverted bottleneck that leaves that level
(TF's ``layer_15/expansion_output`` for MobileNetV2 is ``E4``), and ``final`` the backbone's final 1x1 conv
(the classifier head's, 1280 wide for MobileNetV2). SSD's extra layers are then nodes with a ``conv`` op
(1x1 + BN + ReLU6 to half the width) and a ``sep`` op with ``dw_norm`` (depthwise + BN + ReLU6, stride 2).

The SSD head (SSDLite box predictor) reads ``sources`` in order: per source, a 3x3 depthwise + BN + ReLU6 and a
biased 1x1 to anchors x 4 box codes, and the same to anchors x (classes + 1) class logits (column 0 the
background). Shapes, validation and the layer list live in ``spec.detector_plan``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal, Union

import yaml
from pydantic import Field, field_validator, model_validator

from ..io import write_atomic
from .arch import SCHEMA_VERSION, Arch, InputSize, Norm, NumClasses, Preprocess, _dumped
from .blocks import Channels, KernelSize, Spec, Stride
from .errors import SpecError
from .network import NAME, Level

Expansion = Annotated[int, Field(ge=1, le=16)]


class IbnOp(Spec):
    """1x1 expand to ``expansion`` x the node's width + BN + ReLU6 -> k x k depthwise (stride) + BN + ReLU6 ->
    1x1 project + BN."""

    type: Literal["ibn"] = "ibn"
    kernel_size: KernelSize = 3
    expansion: Expansion = 4
    stride: Stride = 1
    residual: bool = False


class FusedGroupedOp(Spec):
    """The input split into ``groups`` slices, one k x k conv per slice (C/g -> expansion x C/g, stride) + BN +
    ReLU6, concatenated -> 1x1 project + BN. ``groups`` 1 is a plain fused IBN."""

    type: Literal["fused_grouped"] = "fused_grouped"
    kernel_size: KernelSize = 3
    expansion: Expansion = 4
    stride: Stride = 1
    groups: Annotated[int, Field(ge=1, le=64)] = 1
    residual: bool = False


class SepOp(Spec):
    """k x k depthwise (stride) with bias, no BN or activation -> 1x1 + BN + ReLU6. With ``dw_norm`` the
    depthwise has BN + ReLU6 and no bias (SSDLite's extra layers, TF's ``separable_conv2d`` in an arg scope)."""

    type: Literal["sep"] = "sep"
    kernel_size: KernelSize = 3
    stride: Stride = 1
    dw_norm: bool = False
    residual: bool = False


class GraphConvOp(Spec):
    """k x k conv (stride) + BN + ReLU6 to ``out_channels`` (default: the node's width)."""

    type: Literal["conv"] = "conv"
    kernel_size: KernelSize = 1
    stride: Stride = 1
    out_channels: Channels | None = None
    residual: bool = False


GraphOp = Annotated[Union[IbnOp, FusedGroupedOp, SepOp, GraphConvOp], Field(discriminator="type")]


class GraphStem(Spec):
    name: str = "s0"
    kernel_size: KernelSize = 5
    out_channels: Channels = 24


class GraphNode(Spec):
    name: str
    level: Level
    width: Channels
    inputs: Annotated[tuple[str, ...], Field(min_length=1, max_length=16)]
    ops: Annotated[tuple[GraphOp, ...], Field(min_length=1)]

    @field_validator("name")
    @classmethod
    def _identifier(cls, name: str) -> str:
        if not NAME.match(name):
            raise ValueError(f"{name!r} is not a node name (letters, digits and _, not starting with a digit)")
        return name


class SSDHead(Spec):
    """TF OD API's SSD with the SSDLite box predictor and ``multiple_grid_anchor_generator``."""

    type: Literal["ssd"] = "ssd"
    sources: Annotated[tuple[str, ...], Field(min_length=1, max_length=8)]
    num_classes: NumClasses = 90  # foreground classes; the logits have one more column, the background
    kernel_size: KernelSize = 3
    min_scale: Annotated[float, Field(gt=0, le=1)] = 0.2
    max_scale: Annotated[float, Field(gt=0, le=1)] = 0.95
    aspect_ratios: Annotated[tuple[Annotated[float, Field(gt=0)], ...], Field(min_length=1)] = (
        1.0, 2.0, 0.5, 3.0, 0.3333333)
    interpolated_scale_aspect_ratio: Annotated[float, Field(ge=0)] = 1.0  # 0: no interpolated-scale anchor
    reduce_boxes_in_lowest_layer: bool = True
    class_bias_init: float = -4.6

    @model_validator(mode="after")
    def _scales(self):
        if self.min_scale > self.max_scale:
            raise ValueError(f"min_scale {self.min_scale} is above max_scale {self.max_scale}")
        return self

    def anchors_per_location(self) -> list[int]:
        """Anchors per cell per source: 3 on the first when reduced (TF's 'reduce_boxes_in_lowest_layer'),
        else one per aspect ratio plus the interpolated-scale one."""
        full = len(self.aspect_ratios) + (1 if self.interpolated_scale_aspect_ratio > 0 else 0)
        return [3 if i == 0 and self.reduce_boxes_in_lowest_layer else full for i in range(len(self.sources))]


Head = Annotated[Union[SSDHead], Field(discriminator="type")]


class Detector(Spec):
    schema_version: int = SCHEMA_VERSION
    kind: Literal["detector"] = "detector"
    name: str = ""
    task: Literal["detection"] = "detection"
    input_size: InputSize = 320
    in_channels: Annotated[int, Field(ge=1, le=16)] = 3
    backbone: Arch | None = None  # a classification backbone whose features feed the graph (SSDLite baselines)
    stem: GraphStem | None = None  # SpaghettiNet's stem; the default one unless a backbone is given
    nodes: Annotated[tuple[GraphNode, ...], Field(min_length=1)]
    head: Head
    norm: Norm = Norm(eps=1e-3, momentum=0.03)  # SpaghettiNet's config: decay 0.97, eps 1e-3
    padding: Literal["symmetric", "tf"] = "symmetric"  # as Network.padding
    preprocess: Preprocess = Preprocess()

    @model_validator(mode="before")
    @classmethod
    def _known_version(cls, data):
        if isinstance(data, dict) and data.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
            raise SpecError(f"schema_version: {data['schema_version']!r} is not supported "
                            f"(this edgenas reads {SCHEMA_VERSION})", loc=("schema_version",))
        if isinstance(data, dict) and data.get("backbone") is None and data.get("stem") is None:
            data = {**data, "stem": GraphStem()}
        return data

    @model_validator(mode="after")
    def _graph_fits(self):
        if self.backbone is not None and self.stem is not None:
            raise SpecError("stem: a detector with a backbone has no stem of its own; give one or the other",
                            loc=("stem",))
        if self.backbone is not None and self.backbone.in_channels != self.in_channels:
            raise SpecError(f"backbone.in_channels: {self.backbone.in_channels} differs from the detector's "
                            f"{self.in_channels}", loc=("backbone", "in_channels"))
        from .detector_plan import plan_detector

        plan_detector(self)  # raises a SpecError naming the node, input or op
        return self

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    def replace(self, **changes) -> Detector:
        return parse_detector({**self.model_dump(mode="python"), **_dumped(changes)})

    def with_classes(self, num_classes: int) -> Detector:
        return self.replace(head=self.head.model_copy(update={"num_classes": num_classes}))

    # --- serialization -------------------------------------------------------------------------------
    def to_dict(self, compact: bool = False) -> dict:
        data = self.model_dump(mode="json", exclude_defaults=compact)
        data = {"schema_version": self.schema_version, "kind": self.kind, "name": self.name, "task": self.task,
                "input_size": self.input_size, **data}
        for node_data, node in zip(data["nodes"], self.nodes):  # every op keeps its discriminator
            node_data["ops"] = [{"type": o.type, **d} for d, o in zip(node_data["ops"], node.ops)]
        data["head"] = {"type": self.head.type, **data["head"]}
        if self.backbone is not None:
            data["backbone"] = self.backbone.to_dict(compact)
        return data

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(compact=True), sort_keys=False, default_flow_style=None, width=110)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        write_atomic(path, self.to_json() if path.suffix == ".json" else self.to_yaml())


def parse_detector(data) -> Detector:
    """Validate plain data (as from JSON/YAML) into a ``Detector``; raise a one-line ``SpecError``."""
    from pydantic import ValidationError

    from .errors import from_validation_error

    if isinstance(data, Detector):
        return data
    if not isinstance(data, dict):
        raise SpecError(f"a detector must be a mapping, got {type(data).__name__}")
    try:
        return Detector.model_validate(data)
    except ValidationError as err:
        raise from_validation_error(err) from None


__all__ = ["IbnOp", "FusedGroupedOp", "SepOp", "GraphConvOp", "GraphOp", "GraphStem", "GraphNode", "SSDHead",
           "Detector", "parse_detector"]
