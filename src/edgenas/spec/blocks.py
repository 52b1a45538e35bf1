"""Block specs: frozen, typed, one class per variant, with Google's exact semantics.

Conventions (reference section 2): expansion is relative to the *input* channels (mid = in x expand_ratio);
the projection is linear (BN, no activation); ``group_size`` counts the output channels of each group of the
grouped k x k conv (Google's meaning, groups = mid / group_size); a residual is added iff ``id_skip`` and
stride 1 and in == out. Behaviour that belongs to a block (its checks, its layers) lives on its class.
"""

from __future__ import annotations

import reprlib
from enum import StrEnum
from typing import Annotated, Literal, Union

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from .layer import Layer, conv_out


class Act(StrEnum):
    RELU = "relu"
    RELU6 = "relu6"
    HSWISH = "hswish"
    NONE = "none"


def make_divisible(value: float, divisor: int = 8, round_limit: float = 0.9) -> int:
    """Google's ``round_filters`` rule: nearest multiple of ``divisor``, never more than 10% below ``value``."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < round_limit * value else new


def _odd(k: int) -> int:
    if k % 2 == 0:
        raise ValueError(f"kernel size must be odd, got {k}")
    return k


def at_most(limit: int, why: str) -> AfterValidator:
    """An upper bound whose error says why it is there (pydantic's ``le`` says only the number)."""
    def check(value):
        if value > limit:
            raise ValueError(f"must be at most {limit:,} ({why})")
        return value
    return AfterValidator(check)


def at_most_items(limit: int, why: str) -> BeforeValidator:
    """A cap on a list's length checked before its items are: 100,000 bad entries are refused as fast as one."""
    def check(value):
        if isinstance(value, (list, tuple)) and len(value) > limit:
            raise ValueError(f"{len(value):,} entries; at most {limit} ({why})")
        return value
    return BeforeValidator(check)


KernelSize = Annotated[int, Field(ge=1, le=11), AfterValidator(_odd)]
Stride = Literal[1, 2]
MAX_CHANNELS = 8192
MAX_EXPAND_RATIO = 16
Channels = Annotated[int, Field(gt=0, le=MAX_CHANNELS)]
MidChannels = Annotated[int, Field(gt=0), at_most(MAX_CHANNELS * MAX_EXPAND_RATIO, "the widest expansion an "
                                                  f"expand_ratio allows: {MAX_EXPAND_RATIO} x {MAX_CHANNELS:,}")]


_FEW = 16  # unknown keys reported one by one


class Spec(BaseModel):
    """Base of every spec model: immutable; unknown fields are errors, not silently dropped; NaN and infinity
    are refused before any bound is checked (else NaN fails ``gt=0`` with a misleading reason)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _few_unknown(cls, data):
        """Refuse a mapping with many more keys than the model has fields at once: pydantic would report each
        of 100,000 unknown keys (seconds) where one line is all a user reads. A few stay pydantic's to report,
        each at its own path."""
        if isinstance(data, dict) and len(data) > len(cls.model_fields) + _FEW:
            unknown = [k for k in data if k not in cls.model_fields]
            raise ValueError(f"{reprlib.repr(unknown[0])} and {len(unknown) - 1:,} more keys are not known fields")
        return data


def conv(path, cin, cout, size, k=1, stride=1, dilation=1, groups=1, act="none", bias=False, norm=True):
    return Layer(path=path, op="conv", in_channels=cin, out_channels=cout, in_size=size,
                 out_size=conv_out(size, stride), kernel_size=k, stride=stride, dilation=dilation, groups=groups,
                 bias=bias, norm=norm, act=str(act))


def squeeze_excite(path: str, channels: int, size: tuple[int, int], ratio: float) -> list[Layer]:
    """MobileNetV3's SE: pool, 1x1 to make_divisible(C x ratio) with ReLU, 1x1 back with hard-sigmoid, scale."""
    sq = make_divisible(channels * ratio, 8)
    one = (1, 1)
    return [
        Layer(path=f"{path}.pool", op="pool", in_channels=channels, out_channels=channels, in_size=size,
              out_size=one),
        conv(f"{path}.reduce", channels, sq, one, act="relu", bias=True, norm=False),
        conv(f"{path}.expand", sq, channels, one, act="hsigmoid", bias=True, norm=False),
        Layer(path=f"{path}.scale", op="mul", in_channels=channels, out_channels=channels, in_size=size,
              out_size=size),
    ]


class BlockBase(Spec):
    stride: Stride = 1

    def check(self, cin: int, cout: int) -> list[tuple[str, str]]:
        """Problems that need the block's channels: (field, message) pairs."""
        return []

    def has_residual(self, cin: int, cout: int) -> bool:
        return False

    def layers(self, path: str, cin: int, cout: int, size, stride: int, dilation: int) -> list[Layer]:
        """The block's layers at input ``size``; ``stride``/``dilation`` are the built ones (output stride)."""
        raise NotImplementedError


class _Residual(BlockBase):
    id_skip: bool = True  # False removes the residual even where shapes allow it (MobileNetEdgeTPU v1 G4b0)

    def has_residual(self, cin: int, cout: int) -> bool:
        return self.id_skip and self.stride == 1 and cin == cout

    def _with_add(self, path, cin, cout, layers):
        if self.has_residual(cin, cout):
            end = layers[-1]
            layers.append(Layer(path=f"{path}.add", op="add", num_inputs=2, in_channels=cout, out_channels=cout,
                                in_size=end.out_size, out_size=end.out_size))
        return layers


class _Expanding(_Residual):
    kernel_size: KernelSize = 3
    expand_ratio: Annotated[int | float, Field(gt=0, le=MAX_EXPAND_RATIO)] = 1
    mid_channels: MidChannels | None = None  # explicit width (MobileNetV3 tables); ratio stays 1
    se_ratio: Annotated[float, Field(ge=0, lt=1)] = 0.0
    act: Act = Act.RELU

    @model_validator(mode="after")
    def _one_expansion(self):
        if self.mid_channels is not None and self.expand_ratio != 1:
            raise ValueError("give expand_ratio or mid_channels, not both")
        return self

    def mid(self, cin: int) -> int:
        return self.mid_channels if self.mid_channels is not None else round(cin * self.expand_ratio)

    def check(self, cin, cout):
        if self.mid(cin) < 1:  # every later check, count and build divides by the expanded width
            return [("expand_ratio", f"{self.expand_ratio:g} x {cin} input channels rounds to 0 expanded "
                                     "channels")]
        return self._width_checks(cin, cout)

    def _width_checks(self, cin: int, cout: int) -> list[tuple[str, str]]:
        """Problems that need the channels, given at least one expanded channel."""
        return []

    def _se(self, path, channels, size) -> list[Layer]:
        return squeeze_excite(f"{path}.se", channels, size, self.se_ratio) if self.se_ratio else []


class _Grouped(_Expanding):
    group_size: Annotated[int, Field(gt=0)]  # output channels per group of the grouped k x k conv

    def groups(self, cin: int) -> int:
        return self.mid(cin) // self.group_size

    def _group_checks(self, cin: int) -> list[tuple[str, str]]:
        mid = self.mid(cin)
        if mid % self.group_size:
            return [("group_size", f"{self.group_size} does not divide the {mid} expanded channels")]
        return []


class IBN(_Expanding):
    """Inverted bottleneck: [1x1 expand] -> k x k depthwise -> 1x1 linear projection."""

    type: Literal["ibn"] = "ibn"

    def spatial_groups(self, cin: int) -> int:
        return self.mid(cin)

    def layers(self, path, cin, cout, size, stride, dilation):
        mid, out = self.mid(cin), []
        if mid != cin:
            out.append(conv(f"{path}.expand", cin, mid, size, act=self.act))
        out.append(conv(f"{path}.spatial", mid, mid, size, self.kernel_size, stride, dilation,
                        self.spatial_groups(cin), act=self.act))
        size = out[-1].out_size
        out += self._se(path, mid, size)
        out.append(conv(f"{path}.project", mid, cout, size))
        return self._with_add(path, cin, cout, out)


class GroupedIBN(_Grouped, IBN):
    """IBN with a grouped k x k conv in place of the depthwise one (in Google's space, unused by its models)."""

    type: Literal["grouped_ibn"] = "grouped_ibn"

    def spatial_groups(self, cin: int) -> int:
        return self.groups(cin)

    def _width_checks(self, cin, cout):
        return self._group_checks(cin)


class FusedIBN(_Expanding):
    """Fused IBN: k x k full conv expand -> 1x1 linear projection. With expand_ratio 1 only the projection."""

    type: Literal["fused_ibn"] = "fused_ibn"

    def expand_groups(self, cin: int) -> int:
        return 1

    def _width_checks(self, cin, cout):
        if self.mid(cin) == cin and self.stride != 1:
            return [("stride", "a fused block with expand_ratio 1 is a 1x1 projection only and cannot downsample")]
        return []

    def layers(self, path, cin, cout, size, stride, dilation):
        mid, out = self.mid(cin), []
        if mid != cin:  # Google's corner case: expand_ratio 1 leaves no k x k conv at all
            out.append(conv(f"{path}.expand", cin, mid, size, self.kernel_size, stride, dilation,
                            self.expand_groups(cin), act=self.act))
            size = out[-1].out_size
        out += self._se(path, mid, size)
        out.append(conv(f"{path}.project", mid, cout, size))
        return self._with_add(path, cin, cout, out)


class GCIBN(_Grouped, FusedIBN):
    """Group-conv IBN: a fused IBN whose k x k expansion is grouped (groups = mid / group_size)."""

    type: Literal["gc_ibn"] = "gc_ibn"

    def expand_groups(self, cin: int) -> int:
        return self.groups(cin)

    def _width_checks(self, cin, cout):
        mid = self.mid(cin)
        if mid == cin:
            return [("expand_ratio", "a gc_ibn block needs expand_ratio > 1 (with 1 there is no grouped conv)")]
        problems = self._group_checks(cin)
        if problems:
            return problems
        groups = self.groups(cin)
        if groups == 1:
            return [("group_size", f"{self.group_size} makes one group of the {mid} expanded channels; "
                                   "that is a fused_ibn block")]
        if cin % groups:
            return [("group_size", f"{groups} groups do not split the {cin} input channels evenly")]
        return []


class Skip(BlockBase):
    """Identity: the search option that removes a block (how depth is searched)."""

    type: Literal["skip"] = "skip"

    def check(self, cin, cout):
        problems = []
        if self.stride != 1:
            problems.append(("stride", "a skip block cannot downsample"))
        if cin != cout:
            problems.append(("type", f"a skip block needs equal input and output channels, not {cin} -> {cout}"))
        return problems

    def layers(self, path, cin, cout, size, stride, dilation):
        return []


class Conv(BlockBase):
    """k x k conv -> BN -> activation (stems, heads, timm's ``cn`` blocks)."""

    type: Literal["conv"] = "conv"
    kernel_size: KernelSize = 3
    act: Act = Act.RELU

    def layers(self, path, cin, cout, size, stride, dilation):
        return [conv(f"{path}.conv", cin, cout, size, self.kernel_size, stride, dilation, act=self.act)]


class SepConv(_Residual):
    """Depthwise k x k -> BN -> act -> 1x1 -> BN -> act."""

    type: Literal["sep_conv"] = "sep_conv"
    kernel_size: KernelSize = 3
    act: Act = Act.RELU

    def layers(self, path, cin, cout, size, stride, dilation):
        dw = conv(f"{path}.spatial", cin, cin, size, self.kernel_size, stride, dilation, cin, act=self.act)
        pw = conv(f"{path}.project", cin, cout, dw.out_size, act=self.act)
        return self._with_add(path, cin, cout, [dw, pw])


Block = Annotated[Union[IBN, FusedIBN, GCIBN, GroupedIBN, Skip, Conv, SepConv], Field(discriminator="type")]
BLOCK_TYPES: dict[str, type[BlockBase]] = {
    cls.model_fields["type"].default: cls for cls in (IBN, FusedIBN, GCIBN, GroupedIBN, Skip, Conv, SepConv)
}
