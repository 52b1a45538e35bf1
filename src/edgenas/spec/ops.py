"""The ops of a graph node, one class per op, shared by the two graph families: a ``Network``'s nodes
(segmentation heads) and a ``Detector``'s (SpaghettiNet, SSDLite's extra layers).

The families differ in their conventions, not in their ops: a field left unset (``None``) takes the family's
default when the node is validated (``settled``), so a validated spec always says what it builds. A network's
convs end in ReLU (DeepLab's head); a detector's in ReLU6 (SpaghettiNet, SSDLite), and there a plain
``sep_conv``'s depthwise has a bias and no BN or activation, one with ``dw_norm`` BN + ReLU6 and no bias.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self, Union

from pydantic import Field, field_validator, model_validator

from .blocks import Act, Channels, KernelSize, Spec, Stride, at_most_items

Dilation = Annotated[int, Field(ge=1, le=64)]
Expansion = Annotated[int, Field(ge=1, le=16)]
# Far above any graph the project writes (Autoseg's: 48 nodes; SpaghettiNet's: 12 nodes of at most 4 ops), so
# that a junk list is refused before its entries are validated.
MAX_NODES, MAX_OPS = 256, 16
OpsCap = at_most_items(MAX_OPS, "a node")
# Spellings read as another op's type and never written: SpaghettiNet's detector files wrote ``sep``.
OP_ALIASES = {"sep": "sep_conv"}


class Op(Spec):
    def settled(self, family: str) -> Self:
        """This op with every unset field at ``family``'s default."""
        return self


class ConvOp(Op):
    """k x k conv (stride) [-> BN] [-> act] to ``out_channels`` (a detector's default: the node's width)."""

    type: Literal["conv"] = "conv"
    out_channels: Channels | None = None
    kernel_size: KernelSize = 1
    stride: Stride = 1
    dilation: Dilation = 1
    bias: bool = False
    norm: bool = True
    act: Act | None = None  # network: relu; detector: relu6
    residual: bool = False

    def settled(self, family: str) -> Self:
        if self.act is not None:
            return self
        return self.model_copy(update={"act": Act.RELU if family == "network" else Act.RELU6})


class SepConvOp(Op):
    """Depthwise k x k (stride) [-> BN] [-> act] -> 1x1 [-> BN] [-> act]. DeepLab normalises both halves; Keras'
    ``SeparableConv2D`` (BiFPN) has neither BN nor act between them; SpaghettiNet biases the depthwise."""

    type: Literal["sep_conv", "sep"] = "sep_conv"
    out_channels: Channels | None = None  # a detector's default: the node's width
    kernel_size: KernelSize = 3
    stride: Stride = 1
    dilation: Dilation = 1
    dw_bias: bool | None = None  # network: false; detector: true unless dw_norm
    dw_norm: bool = False
    dw_act: Act | None = None  # network: none; detector: relu6 with dw_norm, else none
    bias: bool = False
    norm: bool = True
    act: Act | None = None  # network: relu; detector: relu6
    residual: bool = False

    @field_validator("type")
    @classmethod
    def _one_spelling(cls, kind: str) -> str:
        return OP_ALIASES.get(kind, kind)

    def settled(self, family: str) -> Self:
        detector = family == "detector"
        defaults = {"dw_bias": detector and not self.dw_norm,
                    "dw_act": Act.RELU6 if detector and self.dw_norm else Act.NONE,
                    "act": Act.RELU6 if detector else Act.RELU}
        update = {k: v for k, v in defaults.items() if getattr(self, k) is None}
        return self.model_copy(update=update) if update else self


class PoolOp(Op):
    """k x k average or max pooling with stride, 'same' padding; ``kernel_size`` None pools globally."""

    type: Literal["pool"] = "pool"
    kind: Literal["avg", "max"] = "avg"
    kernel_size: Annotated[int, Field(ge=1, le=64)] | None = None
    stride: Annotated[int, Field(ge=1, le=64)] = 1


class ResizeOp(Op):
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


class DropoutOp(Op):
    type: Literal["dropout"] = "dropout"
    rate: Annotated[float, Field(ge=0, lt=1)]


class IbnOp(Op):
    """1x1 expand to ``expansion`` x the node's width + BN + ReLU6 -> k x k depthwise (stride) + BN + ReLU6 ->
    1x1 project + BN."""

    type: Literal["ibn"] = "ibn"
    kernel_size: KernelSize = 3
    expansion: Expansion = 4
    stride: Stride = 1
    residual: bool = False


class FusedGroupedOp(Op):
    """The input split into ``groups`` slices, one k x k conv per slice (C/g -> expansion x C/g, stride) + BN +
    ReLU6, concatenated -> 1x1 project + BN. ``groups`` 1 is a plain fused IBN."""

    type: Literal["fused_grouped"] = "fused_grouped"
    kernel_size: KernelSize = 3
    expansion: Expansion = 4
    stride: Stride = 1
    groups: Annotated[int, Field(ge=1, le=64)] = 1
    residual: bool = False


NetworkOp = Annotated[Union[ConvOp, SepConvOp, PoolOp, ResizeOp, DropoutOp], Field(discriminator="type")]
DetectorOp = Annotated[Union[IbnOp, FusedGroupedOp, SepConvOp, ConvOp], Field(discriminator="type")]
OP_TYPES = {"conv", "sep_conv", "pool", "resize", "dropout", "ibn", "fused_grouped", *OP_ALIASES}
