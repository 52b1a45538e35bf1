"""An ``Arch`` as modules: the backbone (stem and stages, read at feature levels or named taps), the arch's
own classifier head, and Google's initialization. Every family builds on these."""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from itertools import chain
from types import MappingProxyType

import torch
from torch import nn

from ..spec import Arch, block_plan, feature_levels
from .blocks import BLOCK_MODULES
from .layers import GC_MODES, ConvNormAct, make_act


@dataclass(frozen=True)
class FeatureInfo:
    channels: int
    reduction: int  # stride relative to the input
    module: str  # the module whose output this is


class Backbone(nn.Module):
    """Stem and stages. ``forward`` returns the feature levels (``feature_info``) as a list, finest first."""

    def __init__(self, arch: Arch, *, output_stride: int | None = None, gc_mode: str = "native"):
        super().__init__()
        if gc_mode not in GC_MODES:
            raise ValueError(f"gc_mode must be one of {', '.join(GC_MODES)}, got {gc_mode!r}")
        norm = arch.norm
        self.stem = ConvNormAct(arch.in_channels, arch.stem.out_channels, arch.stem.kernel_size, arch.stem.stride,
                                act=arch.stem.act, norm=norm)
        stages: list[list[nn.Module]] = [[] for _ in arch.stages]
        for pb in block_plan(arch, output_stride):
            module_cls = BLOCK_MODULES[type(pb.block)]
            stages[pb.stage].append(module_cls(pb.block, pb.in_channels, pb.out_channels, stride=pb.stride,
                                               dilation=pb.dilation, norm=norm, drop_path=pb.drop_path,
                                               gc_mode=gc_mode))
        self.stages = nn.ModuleList(nn.ModuleList(blocks) for blocks in stages)
        levels = feature_levels(arch, output_stride)
        plan = block_plan(arch)
        self.feature_info = [
            FeatureInfo(lv.channels, lv.reduction,
                        "stem" if lv.block < 0 else f"stages.{plan[lv.block].stage}.{plan[lv.block].index}")
            for lv in levels
        ]
        self._levels = {lv.block: i for i, lv in enumerate(levels)}

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.forward_taps(x, self._levels)[1].values())

    def forward_taps(self, x: torch.Tensor, after: Mapping[int, Hashable],
                     inside: Mapping[int, Hashable] = MappingProxyType({})) -> tuple[torch.Tensor, dict]:
        """The last block's output, and the tensors at the taps in execution order: ``after[n]`` names the
        output of block ``n`` (-1: the stem), ``inside[n]`` the expansion that block ``n`` exposes
        (``forward_with_expansion``)."""
        x = self.stem(x)
        taps = {after[-1]: x} if -1 in after else {}
        for n, block in enumerate(chain.from_iterable(self.stages)):
            if n in inside:
                x, taps[inside[n]] = block.forward_with_expansion(x)
            else:
                x = block(x)
            if n in after:
                taps[after[n]] = x
        return x, taps


class ClassifierHead(nn.Module):
    def __init__(self, arch: Arch):
        super().__init__()
        head, ch = arch.head, arch.out_channels
        self.conv = (ConvNormAct(ch, head.conv_channels, act=head.act, norm=arch.norm) if head.conv_channels
                     else nn.Identity())
        ch = head.conv_channels or ch
        self.pool = nn.AdaptiveAvgPool2d(1)
        if head.hidden_channels:
            self.hidden = nn.Sequential(nn.Linear(ch, head.hidden_channels), make_act(head.act))
            ch = head.hidden_channels
        else:
            self.hidden = nn.Identity()
        self.dropout = nn.Dropout(head.dropout)
        self.classifier = nn.Linear(ch, head.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.conv(x)).flatten(1)
        return self.classifier(self.dropout(self.hidden(x)))


def init_weights(model: nn.Module) -> None:
    """Google's initializers (convs VarianceScaling(2, fan_out, normal), dense VarianceScaling(1/3, fan_out,
    uniform), BN gamma 1 / beta 0, biases 0), except a classifier head's final layer: normal(0, 0.01), as
    torchvision's MobileNetV2/V3.

    Google's dense rule bounds a layer at 1/sqrt(fan_out); for a classifier fan_out is the class count, so the rule
    is sized for 1000 classes, and for 10 (Fashion-MNIST, the quickstart) it starts the classifier 10x larger
    (+-0.32). The quickstart's winner trained that way reached logits of 164 on a few test images, their
    activations ~100x the median image's at the head, and 84.56% test top-1; with normal(0, 0.01) its largest
    logit is 5.2 and top-1 87.08% (bench/init_logits.py, docs/training.md). A hidden dense layer (MobileNetV3's
    1024-wide one) keeps Google's rule: its fan_out is what the rule is sized for, and at 0.01 it starts so small
    that a short training barely moves it.

    A conv's fan_out is PyTorch's (``kaiming_normal_``: out * kh * kw), not TF's, which differs for depthwise and
    grouped convs: ``_compute_fans`` (keras ``initializers``) reads Google's ``DepthwiseConv2D`` kernel
    [kh, kw, C, 1] as kh * kw and ``GroupConv2D``'s per-group kernels [kh, kw, in/g, out/g] as kh * kw * out / g
    (tensorflow/models ``projects/edgetpu/vision/modeling/custom_layers.py``), so Google starts a depthwise weight
    sqrt(C) larger. TF's count was tried (issue 27) and is not the default yet: the eval-mode BatchNorm of a short
    run, whose running statistics have barely left their init (momentum 0.01), no longer tames those outputs.
    Measured then: Autoseg-XS's first loss 7.3 (ln 11 = 2.4) with a stem gradient of 1336 (74 with PyTorch's
    count), and two dense test runs diverging; an untrained SSDLite's ONNX export reproducing 98.5% of its
    detections (100%); the int8 export test's 3-epoch classifier at 95% top-1 agreement (bar 99%). Adopting it
    needs the run settings (BatchNorm momentum, heads' init) tuned with it, in bench/."""
    classifiers = {id(m.classifier) for m in model.modules() if isinstance(m, ClassifierHead)}
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            if id(m) in classifiers:
                nn.init.normal_(m.weight, 0.0, 0.01)
            else:
                bound = 1.0 / math.sqrt(m.out_features)  # sqrt(3 * (1/3) / fan_out)
                nn.init.uniform_(m.weight, -bound, bound)
            nn.init.zeros_(m.bias)


def build_backbone(arch: Arch, *, output_stride: int | None = None, gc_mode: str = "native") -> Backbone:
    backbone = Backbone(arch, output_stride=output_stride, gc_mode=gc_mode)
    init_weights(backbone)
    return backbone
