"""Block modules, one per block shape, built from a block spec. One kwarg vocabulary for all:
``(spec, in_channels, out_channels, *, stride, dilation, norm, drop_path, gc_mode)``.

``stride`` and ``dilation`` are the built ones (see ``spec.block_plan``); the spec decides everything else.
"""

from __future__ import annotations

import torch
from torch import nn

from ..spec import GCIBN, IBN, Conv, FusedIBN, GroupedIBN, SepConv, Skip, make_divisible
from .layers import ConvNormAct, DropPath, SqueezeExcite


class _ResidualBlock(nn.Module):
    def _init_residual(self, spec, in_channels, out_channels, drop_path):
        self.has_residual = spec.has_residual(in_channels, out_channels)
        self.drop_path = DropPath(drop_path) if self.has_residual and drop_path > 0 else nn.Identity()

    def _finish(self, x: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
        return self.drop_path(x) + shortcut if self.has_residual else x


def _se(spec, channels):
    return SqueezeExcite(channels, make_divisible(channels * spec.se_ratio, 8)) if spec.se_ratio else nn.Identity()


class InvertedBottleneck(_ResidualBlock):
    """ibn / grouped_ibn: [1x1 expand] -> k x k depthwise (or grouped) -> [SE] -> 1x1 linear projection.

    Its feature tap: ``forward_with_expansion`` also returns the expansion's output, which TF's SSD feature
    extractors read from the first block of a level (``spec.Tensor.expansion``)."""

    def __init__(self, spec: IBN, in_channels, out_channels, *, stride, dilation, norm, drop_path, gc_mode):
        super().__init__()
        mid = spec.mid(in_channels)
        self.expand = (ConvNormAct(in_channels, mid, act=spec.act, norm=norm) if mid != in_channels
                       else nn.Identity())
        self.spatial = ConvNormAct(mid, mid, spec.kernel_size, stride, groups=spec.spatial_groups(in_channels),
                                   dilation=dilation, act=spec.act, norm=norm, gc_mode=gc_mode)
        self.se = _se(spec, mid)
        self.project = ConvNormAct(mid, out_channels, norm=norm)
        self._init_residual(spec, in_channels, out_channels, drop_path)

    def forward(self, x):
        return self.forward_with_expansion(x)[0]

    def forward_with_expansion(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.expand(x)
        return self._finish(self.project(self.se(self.spatial(e))), x), e


class FusedBottleneck(_ResidualBlock):
    """fused_ibn / gc_ibn: k x k full (or grouped) expand -> [SE] -> 1x1 linear projection.
    With expand_ratio 1 there is no k x k conv: only the projection (Google's block 0)."""

    def __init__(self, spec: FusedIBN, in_channels, out_channels, *, stride, dilation, norm, drop_path, gc_mode):
        super().__init__()
        mid = spec.mid(in_channels)
        self.expand = (ConvNormAct(in_channels, mid, spec.kernel_size, stride, groups=spec.expand_groups(in_channels),
                                   dilation=dilation, act=spec.act, norm=norm, gc_mode=gc_mode)
                       if mid != in_channels else nn.Identity())
        self.se = _se(spec, mid)
        self.project = ConvNormAct(mid, out_channels, norm=norm)
        self._init_residual(spec, in_channels, out_channels, drop_path)

    def forward(self, x):
        return self._finish(self.project(self.se(self.expand(x))), x)


class ConvBlock(ConvNormAct):
    def __init__(self, spec: Conv, in_channels, out_channels, *, stride, dilation, norm, drop_path, gc_mode):
        super().__init__(in_channels, out_channels, spec.kernel_size, stride, dilation=dilation, act=spec.act,
                         norm=norm)


class SepConvBlock(_ResidualBlock):
    def __init__(self, spec: SepConv, in_channels, out_channels, *, stride, dilation, norm, drop_path, gc_mode):
        super().__init__()
        self.spatial = ConvNormAct(in_channels, in_channels, spec.kernel_size, stride, groups=in_channels,
                                   dilation=dilation, act=spec.act, norm=norm)
        self.project = ConvNormAct(in_channels, out_channels, act=spec.act, norm=norm)
        self._init_residual(spec, in_channels, out_channels, drop_path)

    def forward(self, x):
        return self._finish(self.project(self.spatial(x)), x)


class SkipBlock(nn.Identity):
    def __init__(self, spec: Skip, in_channels, out_channels, **_):
        super().__init__()


BLOCK_MODULES: dict[type, type[nn.Module]] = {
    IBN: InvertedBottleneck, GroupedIBN: InvertedBottleneck, FusedIBN: FusedBottleneck, GCIBN: FusedBottleneck,
    Conv: ConvBlock, SepConv: SepConvBlock, Skip: SkipBlock,
}
