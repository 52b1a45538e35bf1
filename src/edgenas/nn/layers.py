"""Layers shared by every block: conv + BN + activation, portable grouped convs, SE, stochastic depth."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..spec import Act, Norm

GC_MODES = ("native", "split")


def make_act(act: Act | str) -> nn.Module:
    return {"relu": nn.ReLU, "relu6": nn.ReLU6, "hswish": nn.Hardswish, "hsigmoid": nn.Hardsigmoid,
            "none": nn.Identity}[str(act)]()


class SplitGroupConv2d(nn.Conv2d):
    """A grouped conv computed as channel slice -> one conv per group -> concat.

    This is how Google makes GC-IBN portable (runtimes without native grouped convs). The weight is the
    native grouped layout, so state dicts are interchangeable and the outputs are identical.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g, cin, cout = self.groups, self.in_channels // self.groups, self.out_channels // self.groups
        outs = [
            F.conv2d(x[:, i * cin:(i + 1) * cin], self.weight[i * cout:(i + 1) * cout],
                     None if self.bias is None else self.bias[i * cout:(i + 1) * cout],
                     self.stride, self.padding, self.dilation)
            for i in range(g)
        ]
        return torch.cat(outs, dim=1)


class ConvNormAct(nn.Module):
    """k x k conv ('same' padding) -> BatchNorm -> activation: every conv-BN-act of every family.

    ``norm=None`` leaves the BatchNorm out (a dense head's plain or biased conv); ``bias`` gives the conv one.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1, *,
                 groups: int = 1, dilation: int = 1, act: Act | str = Act.NONE, norm: Norm | None,
                 bias: bool = False, gc_mode: str = "native"):
        super().__init__()
        split = gc_mode == "split" and 1 < groups < in_channels  # depthwise convs stay native everywhere
        conv_cls = SplitGroupConv2d if split else nn.Conv2d
        self.conv = conv_cls(in_channels, out_channels, kernel_size, stride, padding=(kernel_size - 1) // 2 * dilation,
                             dilation=dilation, groups=groups, bias=bias)
        self.bn = nn.Identity() if norm is None else nn.BatchNorm2d(out_channels, eps=norm.eps,
                                                                     momentum=norm.momentum)
        self.act = make_act(act)
        self.register_load_state_dict_pre_hook(_legacy_sequential_keys)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


def _legacy_sequential_keys(module, state_dict, prefix, *_):
    """Checkpoints written before issue 27 hold a network op's conv-BN-act as the Sequential ``ConvModule``
    (``0`` the conv, ``1`` the BatchNorm); they load into ``conv`` and ``bn``."""
    for old, new in (("0.", "conv."), ("1.", "bn.")):
        for key in [k for k in state_dict if k.startswith(prefix + old)]:
            state_dict[prefix + new + key[len(prefix + old):]] = state_dict.pop(key)


class SqueezeExcite(nn.Module):
    """MobileNetV3's SE: global pool -> 1x1 reduce + ReLU -> 1x1 expand + hard-sigmoid -> scale."""

    def __init__(self, channels: int, squeeze: int):
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze, 1)
        self.expand = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        return x * F.hardsigmoid(self.expand(F.relu(self.reduce(s))))


class DropPath(nn.Module):
    """Stochastic depth on the residual branch: drop whole samples (TF: Dropout with noise_shape (N,1,1,1))."""

    def __init__(self, rate: float):
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"rate={self.rate:.4f}"
