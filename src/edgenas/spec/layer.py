"""A primitive layer of a built network, derived from the spec alone.

Every consumer that needs per-layer facts (analytic params and MACs, the profiler, latency lookup tables)
reads this list; the PyTorch builder is tested against it. MACs count multiply-accumulates of convolutions
and linear layers only, which is what ``torch.utils.flop_counter`` counts (as FLOPs = 2 x MACs).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Op(StrEnum):
    """The closed set of primitive layers; a StrEnum, so ``layer.op == "conv"`` and JSON keys stay plain."""

    CONV = "conv"
    LINEAR = "linear"
    POOL = "pool"  # global average pool
    MUL = "mul"  # elementwise, with broadcasting (squeeze-and-excite's scale)
    ADD = "add"  # elementwise sum of ``num_inputs`` tensors (residuals: 2), weighted where ``mode`` says so
    AVG_POOL = "avg_pool"  # k x k window with stride, 'same' padding (padding not counted in the mean, as TF)
    MAX_POOL = "max_pool"
    RESIZE = "resize"  # to ``out_size``; ``mode`` bilinear (half-pixel centres) or nearest
    CONCAT = "concat"  # ``num_inputs`` tensors along channels
    ARGMAX = "argmax"  # over channels; ``mode`` "plain" (an int op) or "onehot" (Google's elementwise form)
    CROP = "crop"  # the top-left ``out_size`` window (SpaghettiNet's edges, cropped to a common size)


@dataclass(frozen=True, kw_only=True)
class Layer:
    """Built by keyword only: thirteen fields read positionally are a bug waiting for a reordering."""

    path: str
    op: Op
    in_channels: int
    out_channels: int
    in_size: tuple[int, int]
    out_size: tuple[int, int]
    kernel_size: int = 1
    stride: int = 1
    dilation: int = 1
    groups: int = 1
    bias: bool = False
    norm: bool = False  # a BatchNorm follows (folded away at inference)
    act: str = "none"
    mode: str = ""  # resize: bilinear | nearest; add: sum | attn | fastattn | channel_attn | ...; argmax
    num_inputs: int = 1  # tensors an add or concat combines

    def __post_init__(self):
        object.__setattr__(self, "op", Op(self.op))  # a typo'd op fails here, not in a latency table

    @property
    def params(self) -> int:
        if self.op == "conv":
            w = self.out_channels * (self.in_channels // self.groups) * self.kernel_size**2
            return w + self.out_channels * (int(self.bias) + 2 * int(self.norm))
        if self.op == "linear":
            return self.in_channels * self.out_channels + self.out_channels * int(self.bias)
        if self.op == "add" and self.mode.endswith("attn"):  # one learnt weight per input (per channel)
            return self.num_inputs * (self.out_channels if self.mode.startswith("channel_") else 1)
        return 0

    @property
    def macs(self) -> int:
        if self.op == "conv":
            h, w = self.out_size
            return h * w * self.out_channels * (self.in_channels // self.groups) * self.kernel_size**2
        if self.op == "linear":
            return self.in_channels * self.out_channels
        return 0

    @property
    def is_depthwise(self) -> bool:
        return self.op == "conv" and self.groups > 1 and self.groups == self.in_channels == self.out_channels


def conv_out(size: tuple[int, int], stride: int) -> tuple[int, int]:
    """Output size of a 'same'-padded conv: ceil(in / stride), as in TF's SAME and PyTorch's k//2 padding."""
    return (-(-size[0] // stride), -(-size[1] // stride))
