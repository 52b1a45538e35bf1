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
input into ``groups`` slices and expands each relative to the *input*; ``sep_conv`` is a biased depthwise
conv with no BN or activation before its 1x1 + BN + ReLU6 (files may spell it ``sep``, as they once did).
Residuals are explicit flags. ``spec.ops`` says how these defaults differ from a ``Network``'s.

A detector may instead start from a classification ``backbone`` (an ``Arch``; then there is no stem), as the
SSDLite baselines do. Its features are inputs by name: ``C<level>`` the backbone's feature level (its last
output at stride 2^level), ``E<level>`` the expansion output of the inverted bottleneck that leaves that level
(TF's ``layer_15/expansion_output`` for MobileNetV2 is ``E4``), and ``final`` the backbone's final 1x1 conv
(the classifier head's, 1280 wide for MobileNetV2). SSD's extra layers are then nodes with a ``conv`` op
(1x1 + BN + ReLU6 to half the width) and a ``sep_conv`` op with ``dw_norm`` (depthwise + BN + ReLU6, stride 2).

The SSD head (SSDLite box predictor) reads ``sources`` in order: per source, a 3x3 depthwise + BN + ReLU6 and a
biased 1x1 to anchors x 4 box codes, and the same to anchors x (classes + 1) class logits (column 0 the
background). Shapes, validation and the layer list live in ``spec.detector_plan``.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Union

from pydantic import Field, field_validator, model_validator

from .arch import Arch, InputSize, Norm, NumClasses, Preprocess
from .blocks import MAX_CHANNELS, Act, Channels, KernelSize, Spec, at_most_items
from .detector_plan import plan_detector
from .document import Document, Level, NodeName
from .errors import SpecError, fail
from .ops import MAX_NODES, ConvOp, DetectorOp, OpsCap, SepConvOp

# The class conv is anchors x (classes + 1) wide at every cell of a source, and the latency targets hold each
# layer's tensors whole: ``latency --target edgetpu`` on SSDLite (6 anchors a cell) took 1.4 GB at 1,000 classes,
# 11.8 GB at 10,000 and about 18 GB at 100,000. Capping that conv at the widest any spec conv may be (8,192:
# LVIS's 1,203 classes fit, at about 2 GB) keeps every command usable on a 24 GB machine.
MAX_CLASS_CONV = MAX_CHANNELS
MAX_ASPECT_RATIOS = 8


class GraphStem(Spec):
    name: str = "s0"
    kernel_size: KernelSize = 5
    out_channels: Channels = 24


class GraphNode(Spec):
    name: NodeName
    level: Level
    width: Channels
    inputs: Annotated[tuple[str, ...], Field(min_length=1, max_length=16)]
    ops: Annotated[tuple[DetectorOp, ...], Field(min_length=1), OpsCap]

    @field_validator("ops")
    @classmethod
    def _settled(cls, ops):
        return tuple(_settled(op, (k,)) for k, op in enumerate(ops))


def _settled(op, loc: tuple):
    """``op`` with a detector's defaults. A detector builds its conv and sep_conv with BN after each 1x1 and no
    bias there, undilated, and a depthwise with an activation only behind its BN."""
    if isinstance(op, (ConvOp, SepConvOp)):
        if op.dilation != 1 or op.bias or not op.norm:
            bad = "dilation" if op.dilation != 1 else "bias" if op.bias else "norm"
            fail((*loc, bad), f"a detector's {op.type} is undilated, with BN and no bias (as SpaghettiNet's)")
        if isinstance(op, SepConvOp) and op.dw_norm and op.dw_bias:
            fail((*loc, "dw_bias"), "a depthwise with BN has no bias")
        if isinstance(op, SepConvOp) and not op.dw_norm and op.dw_act not in (None, Act.NONE):
            fail((*loc, "dw_act"), "a depthwise activation needs dw_norm (SpaghettiNet's depthwise has neither)")
    return op.settled("detector")


class SSDHead(Spec):
    """TF OD API's SSD with the SSDLite box predictor and ``multiple_grid_anchor_generator``."""

    type: Literal["ssd"] = "ssd"
    sources: Annotated[tuple[str, ...], Field(min_length=1, max_length=8)]
    num_classes: NumClasses = 90  # foreground classes; the logits have one more column, the background
    kernel_size: KernelSize = 3
    min_scale: Annotated[float, Field(gt=0, le=1)] = 0.2
    max_scale: Annotated[float, Field(gt=0, le=1)] = 0.95
    aspect_ratios: Annotated[tuple[Annotated[float, Field(gt=0)], ...], Field(min_length=1),
                             at_most_items(MAX_ASPECT_RATIOS, "anchors per cell multiply the class logits")] = (
        1.0, 2.0, 0.5, 3.0, 0.3333333)
    interpolated_scale_aspect_ratio: Annotated[float, Field(ge=0)] = 1.0  # 0: no interpolated-scale anchor
    reduce_boxes_in_lowest_layer: bool = True
    class_bias_init: float = -4.6

    @model_validator(mode="after")
    def _scales(self):
        if self.min_scale > self.max_scale:
            raise ValueError(f"min_scale {self.min_scale} is above max_scale {self.max_scale}")
        anchors = max(self.anchors_per_location())
        if anchors * (self.num_classes + 1) > MAX_CLASS_CONV:
            raise SpecError(f"num_classes: {self.num_classes:,} classes + background x {anchors} anchors a cell is "
                            f"a {anchors * (self.num_classes + 1):,}-wide class conv; at most {MAX_CLASS_CONV:,}",
                            loc=("num_classes",))
        return self

    def anchors_per_location(self) -> list[int]:
        """Anchors per cell per source: 3 on the first when reduced (TF's 'reduce_boxes_in_lowest_layer'),
        else one per aspect ratio plus the interpolated-scale one."""
        full = len(self.aspect_ratios) + (1 if self.interpolated_scale_aspect_ratio > 0 else 0)
        return [3 if i == 0 and self.reduce_boxes_in_lowest_layer else full for i in range(len(self.sources))]


Head = Annotated[Union[SSDHead], Field(discriminator="type")]


class Detector(Document):
    LEAD: ClassVar = ("schema_version", "kind", "name", "task", "input_size")
    NOUN: ClassVar = "a detector"

    kind: Literal["detector"] = "detector"
    name: str = ""
    task: Literal["detection"] = "detection"
    input_size: InputSize = 320
    in_channels: Annotated[int, Field(ge=1, le=16)] = 3
    backbone: Arch | None = None  # a classification backbone whose features feed the graph (SSDLite baselines)
    stem: GraphStem | None = None  # SpaghettiNet's stem; the default one unless a backbone is given
    nodes: Annotated[tuple[GraphNode, ...], Field(min_length=1), at_most_items(MAX_NODES, "a detector")]
    head: Head
    norm: Norm = Norm(eps=1e-3, momentum=0.03)  # SpaghettiNet's config: decay 0.97, eps 1e-3
    padding: Literal["symmetric", "tf"] = "symmetric"  # as Network.padding
    preprocess: Preprocess = Preprocess()

    @model_validator(mode="before")
    @classmethod
    def _default_stem(cls, data):
        if isinstance(data, dict) and data.get("backbone") is None and data.get("stem") is None:
            data = {**data, "stem": GraphStem()}
        return data

    def check(self) -> None:
        if self.backbone is not None and self.stem is not None:
            raise SpecError("stem: a detector with a backbone has no stem of its own; give one or the other",
                            loc=("stem",))
        if self.backbone is not None and self.backbone.in_channels != self.in_channels:
            raise SpecError(f"backbone.in_channels: {self.backbone.in_channels} differs from the detector's "
                            f"{self.in_channels}", loc=("backbone", "in_channels"))
        self.preprocess.check_channels(self.in_channels)
        plan_detector(self)  # raises a SpecError naming the node, input or op

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    def with_classes(self, num_classes: int) -> Detector:
        return self.replace(head={**dict(self.head), "num_classes": num_classes})


parse_detector = Detector.parse
